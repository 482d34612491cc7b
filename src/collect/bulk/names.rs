//! The parameter names of a layout, compared with a record's a word at a time.
//!
//! A record matches a layout when every parameter has the layout's name at the same position.
//! Each name is kept as `width` little-endian words (the longest name's length, NUL included,
//! rounded up to words) with a mask of the bytes that count: the name and its NUL, not what the
//! 80-byte field holds after it. The check is then the same few loads, ANDs and XORs for every
//! parameter, with no branch per name.

use super::super::ffi::{RawParam, NAME_WORDS};

/// The names of one layout's parameters, in order.
#[derive(Debug, Clone, Default)]
pub(super) struct Names {
    /// Words compared per parameter (1 to [`NAME_WORDS`]).
    width: usize,
    /// `width` words per parameter: the name and its NUL, zero-padded.
    expect: Vec<u64>,
    /// `width` words per parameter: all ones over the name and its NUL, zero after.
    mask: Vec<u64>,
}

impl Names {
    /// The names of one record, `None` for a name without its NUL (which matches nothing).
    pub(super) fn new(names: &[Option<&[u8]>]) -> Names {
        let width = names
            .iter()
            .map(|n| n.map_or(NAME_WORDS, |n| n.len() / 8 + 1))
            .max()
            .unwrap_or(1)
            .clamp(1, NAME_WORDS);
        let mut expect = Vec::with_capacity(names.len() * width);
        let mut mask = Vec::with_capacity(names.len() * width);
        for name in names {
            let Some(name) = name else {
                // No field matches: an expected bit outside the mask is never equal.
                expect.extend(std::iter::repeat_n(1, width));
                mask.extend(std::iter::repeat_n(0, width));
                continue;
            };
            for k in 0..width {
                let mut w = [0u8; 8];
                let mut m = [0u8; 8];
                // Bytes 8k..8k+8 of the name followed by its NUL.
                for (j, (w, m)) in w.iter_mut().zip(&mut m).enumerate() {
                    let at = 8 * k + j;
                    if at <= name.len() {
                        *w = name.get(at).copied().unwrap_or(0);
                        *m = 0xff;
                    }
                }
                expect.push(u64::from_le_bytes(w));
                mask.push(u64::from_le_bytes(m));
            }
        }
        Names {
            width,
            expect,
            mask,
        }
    }

    /// Number of names.
    pub(super) fn len(&self) -> usize {
        self.expect.len() / self.width.max(1)
    }

    /// True when `params` have exactly these names, in order.
    pub(super) fn matches<'a>(&self, params: impl ExactSizeIterator<Item = RawParam<'a>>) -> bool {
        if params.len() != self.len() {
            return false;
        }
        // One loop per width, so that the words of a name are compared without a loop.
        match self.width {
            1 => self.matches_k::<1>(params),
            2 => self.matches_k::<2>(params),
            3 => self.matches_k::<3>(params),
            4 => self.matches_k::<4>(params),
            5 => self.matches_k::<5>(params),
            6 => self.matches_k::<6>(params),
            7 => self.matches_k::<7>(params),
            8 => self.matches_k::<8>(params),
            9 => self.matches_k::<9>(params),
            _ => self.matches_k::<NAME_WORDS>(params),
        }
    }

    fn matches_k<'a, const K: usize>(&self, params: impl Iterator<Item = RawParam<'a>>) -> bool {
        // Differences are gathered over all names and tested once: a mismatch is rare.
        let mut diff = 0u64;
        let words = self.expect.chunks_exact(K).zip(self.mask.chunks_exact(K));
        for (p, (e, m)) in params.zip(words) {
            let (Ok(e), Ok(m)) = (<&[u64; K]>::try_from(e), <&[u64; K]>::try_from(m)) else {
                return false;
            };
            let field = p.name_words();
            for k in 0..K.min(NAME_WORDS) {
                diff |= (u64::from_le_bytes(field[k]) & m[k]) ^ e[k];
            }
        }
        diff == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::ffi::{OwnedParams, OwnedValue};
    use proptest::prelude::*;

    fn params(names: &[String], after_nul: u8) -> OwnedParams {
        let mut p = OwnedParams::new();
        for n in names {
            p.push(n, OwnedValue::UInt(1));
        }
        p.fill_after_names(after_nul);
        p
    }

    fn names_of(p: &OwnedParams) -> Names {
        let bytes: Vec<Option<&[u8]>> = p.raw_params().map(|r| r.name_bytes()).collect();
        Names::new(&bytes)
    }

    #[test]
    fn names_of_every_length_match_themselves_whatever_follows_the_nul() {
        for len in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 78, 79] {
            let list = vec!["x".repeat(len), "cpu.time".to_owned()];
            let names = names_of(&params(&list, 0));
            for fill in [0, b'x', 0xff] {
                assert!(
                    names.matches(params(&list, fill).raw_params()),
                    "{len} {fill}"
                );
            }
        }
    }

    #[test]
    fn a_name_that_is_a_prefix_or_extension_of_another_does_not_match() {
        let long = vec!["block.0.rd.bytes".to_owned()];
        let short = vec!["block.0.rd.byte".to_owned()];
        // The shorter name's NUL sits where the longer one has an `s`, even with `s` after it.
        assert!(!names_of(&params(&long, 0)).matches(params(&short, b's').raw_params()));
        assert!(!names_of(&params(&short, 0)).matches(params(&long, 0).raw_params()));
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-z0-9._]{0,79}"
    }

    proptest! {
        /// A record matches exactly when it has the same names in the same order, whatever its
        /// name fields hold after the NULs.
        #[test]
        fn matches_exactly_the_same_names(
            a in proptest::collection::vec(name(), 0..6),
            edit in 0usize..4,
            at in any::<proptest::sample::Index>(),
            pos in any::<proptest::sample::Index>(),
            fill in any::<u8>(),
        ) {
            let mut b = a.clone();
            if !b.is_empty() {
                let i = at.index(b.len());
                let n = &mut b[i];
                match edit {
                    0 => {} // the same names
                    1 if !n.is_empty() => {
                        let p = pos.index(n.len());
                        let c = if n.as_bytes()[p] == b'a' { "b" } else { "a" };
                        n.replace_range(p..=p, c);
                    }
                    2 => { n.pop(); }
                    _ => if n.len() < 79 { n.push('z') },
                }
            }
            let names = names_of(&params(&a, 0));
            prop_assert_eq!(names.matches(params(&b, fill).raw_params()), a == b);
        }
    }
}
