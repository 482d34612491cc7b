//! The only `unsafe` code in vmtel: libvirt's bulk statistics call and its typed parameters, the
//! host's CPU and memory statistics (which the `virt` crate does not wrap), and handing the C
//! heap's free memory back to the system.
//!
//! The `virt` crate wraps most of libvirt safely, but `virConnectGetAllDomainStats` comes back as
//! raw `virDomainStatsRecordPtr`s whose typed parameters it neither decodes nor frees. This module
//! makes that call, hands out borrowed, safe views of the records ([`Record`], [`Param`],
//! [`Value`]) and frees the whole list with `virDomainStatsRecordListFree` when the owning
//! [`StatsList`] is dropped.
//!
//! # Safety argument
//!
//! * A [`StatsList`] exclusively owns the array libvirt returned; it is freed exactly once, in
//!   `Drop`, and every view borrows from the list, so no view outlives the memory.
//! * Each record's `params`/`nparams` pair describes an array libvirt allocated with that length.
//! * A parameter's `field` is a fixed 80-byte, NUL-terminated buffer; a missing NUL is treated as
//!   an unreadable name and the parameter is skipped rather than read past its end.
//! * A parameter's value union is read only through the member its `type_` names; string values
//!   are NUL-terminated C strings owned by the record.
//! * [`node_stats`] passes libvirt a Rust-owned array of the length libvirt reported and reads
//!   back at most that many entries; each name is read up to its NUL within its fixed buffer.
//! * [`release_free_memory`] calls glibc's `malloc_trim`, which takes no pointer.
//! * [`OwnedParams`] builds parameter arrays in Rust (for tests and the replay benchmark) and owns
//!   every string it points to, so the same reading code is sound for it.

use std::borrow::Cow;
use std::ffi::{c_char, CStr, CString};
use std::marker::PhantomData;

use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::Error;
use virt::sys;

/// Returns the C heap's free memory to the operating system (glibc's `malloc_trim(0)`).
///
/// A cycle allocates and frees memory in libvirt and in vmtel (records, per-domain replies,
/// XML, chunks of samples and text); glibc keeps what was freed for reuse, spread over the
/// heaps of several threads, so the process's resident size would hold each thread's peak. The
/// worker calls this after each cycle, and the history store after committing one: resident
/// memory then follows what vmtel keeps between cycles, at the cost of a few hundred page faults
/// in the next cycle.
pub fn release_free_memory() {
    // SAFETY: malloc_trim only walks glibc's own heap structures under its locks; it takes no
    // pointer and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// One decoded typed-parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// `VIR_TYPED_PARAM_INT`
    Int(i32),
    /// `VIR_TYPED_PARAM_UINT`
    UInt(u32),
    /// `VIR_TYPED_PARAM_LLONG`
    LLong(i64),
    /// `VIR_TYPED_PARAM_ULLONG`
    ULLong(u64),
    /// `VIR_TYPED_PARAM_DOUBLE`
    Double(f64),
    /// `VIR_TYPED_PARAM_BOOLEAN`
    Bool(bool),
    /// `VIR_TYPED_PARAM_STRING` (invalid UTF-8 replaced)
    Str(Cow<'a, str>),
    /// A type code this version of vmtel does not know.
    Unknown(i32),
}

impl Value<'_> {
    /// The value as an unsigned counter. Negative numbers (QEMU's `-1` for "unsupported"),
    /// floats, booleans and strings give `None`.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Int(v) => u64::try_from(v).ok(),
            Value::UInt(v) => Some(u64::from(v)),
            Value::LLong(v) => u64::try_from(v).ok(),
            Value::ULLong(v) => Some(v),
            _ => None,
        }
    }

    /// The value as a signed integer (`None` for a ULLONG above `i64::MAX`, floats, booleans
    /// and strings).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(v) => Some(i64::from(v)),
            Value::UInt(v) => Some(i64::from(v)),
            Value::LLong(v) => Some(v),
            Value::ULLong(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// One typed parameter: its name (`cpu.time`, `net.0.rx.bytes`) and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Param<'a> {
    /// Parameter name.
    pub name: &'a str,
    /// Parameter value.
    pub value: Value<'a>,
}

/// Reads one parameter.
///
/// # Safety
/// If `p.type_` is `VIR_TYPED_PARAM_STRING`, `p.value.s` must be null or point to a
/// NUL-terminated string that lives at least as long as `'a`.
unsafe fn decode(p: &sys::virTypedParameter) -> Option<Param<'_>> {
    // SAFETY: c_char and u8 have the same size and alignment; the array is borrowed from `p`.
    let bytes: &[u8; 80] = unsafe { &*(&p.field as *const [c_char; 80] as *const [u8; 80]) };
    let len = bytes.iter().position(|&b| b == 0)?;
    let raw = &bytes[..len];
    let name = std::str::from_utf8(raw).ok()?;
    // SAFETY: each union member is read only when `type_` says it is the one libvirt wrote.
    let value = unsafe {
        match p.type_ as u32 {
            sys::VIR_TYPED_PARAM_INT => Value::Int(p.value.i),
            sys::VIR_TYPED_PARAM_UINT => Value::UInt(p.value.ui),
            sys::VIR_TYPED_PARAM_LLONG => Value::LLong(p.value.l),
            sys::VIR_TYPED_PARAM_ULLONG => Value::ULLong(p.value.ul),
            sys::VIR_TYPED_PARAM_DOUBLE => Value::Double(p.value.d),
            sys::VIR_TYPED_PARAM_BOOLEAN => Value::Bool(p.value.b != 0),
            sys::VIR_TYPED_PARAM_STRING => {
                let s = p.value.s;
                if s.is_null() {
                    return None;
                }
                // SAFETY: non-null and NUL-terminated per this function's contract.
                Value::Str(CStr::from_ptr(s).to_string_lossy())
            }
            other => Value::Unknown(other as i32),
        }
    };
    Some(Param { name, value })
}

/// Words of 8 bytes in a typed parameter's 80-byte name field.
pub const NAME_WORDS: usize = 10;

/// One typed parameter, read lazily: checking its name against a known one costs a few word
/// comparisons, with no NUL scan or UTF-8 check. Only this module creates one, from arrays that
/// satisfy [`decode`]'s contract for `'a`.
#[derive(Clone, Copy)]
pub struct RawParam<'a> {
    p: &'a sys::virTypedParameter,
}

impl<'a> RawParam<'a> {
    fn field(&self) -> &'a [u8; 80] {
        // SAFETY: c_char and u8 have the same size and alignment; the array is borrowed from the
        // parameter, which lives for `'a`.
        unsafe { &*(&self.p.field as *const [c_char; 80] as *const [u8; 80]) }
    }

    /// The name's bytes before the NUL; `None` when the 80-byte field has no NUL.
    pub fn name_bytes(&self) -> Option<&'a [u8]> {
        let f = self.field();
        let len = f.iter().position(|&b| b == 0)?;
        Some(&f[..len])
    }

    /// The 80-byte name field as [`NAME_WORDS`] 8-byte words (bytes after the NUL may hold
    /// anything): names are compared a word at a time (see the decoder's layouts).
    #[inline]
    pub fn name_words(&self) -> &'a [[u8; 8]; NAME_WORDS] {
        // SAFETY: [u8; 80] and [[u8; 8]; 10] have the same size and alignment (1), and every
        // bit pattern is valid for both; the array is borrowed from the parameter for `'a`.
        unsafe { &*(self.field() as *const [u8; 80] as *const [[u8; 8]; NAME_WORDS]) }
    }

    /// The whole parameter, decoded; `None` for an unreadable name or a null string value.
    pub fn decode(&self) -> Option<Param<'a>> {
        // SAFETY: a RawParam is only made from parameters that satisfy `decode`'s contract.
        unsafe { decode(self.p) }
    }

    /// The value as an unsigned counter; see [`Value::as_u64`].
    pub fn as_u64(&self) -> Option<u64> {
        // SAFETY: each union member is read only when `type_` says it is the one written.
        unsafe {
            match self.p.type_ as u32 {
                sys::VIR_TYPED_PARAM_INT => u64::try_from(self.p.value.i).ok(),
                sys::VIR_TYPED_PARAM_UINT => Some(u64::from(self.p.value.ui)),
                sys::VIR_TYPED_PARAM_LLONG => u64::try_from(self.p.value.l).ok(),
                sys::VIR_TYPED_PARAM_ULLONG => Some(self.p.value.ul),
                _ => None,
            }
        }
    }

    /// The value as a signed integer; see [`Value::as_i64`].
    pub fn as_i64(&self) -> Option<i64> {
        // SAFETY: as in `as_u64`.
        unsafe {
            match self.p.type_ as u32 {
                sys::VIR_TYPED_PARAM_INT => Some(i64::from(self.p.value.i)),
                sys::VIR_TYPED_PARAM_UINT => Some(i64::from(self.p.value.ui)),
                sys::VIR_TYPED_PARAM_LLONG => Some(self.p.value.l),
                sys::VIR_TYPED_PARAM_ULLONG => i64::try_from(self.p.value.ul).ok(),
                _ => None,
            }
        }
    }

    /// The value as a string (invalid UTF-8 replaced), if it is a non-null string.
    pub fn as_str(&self) -> Option<Cow<'a, str>> {
        if self.p.type_ as u32 != sys::VIR_TYPED_PARAM_STRING {
            return None;
        }
        // SAFETY: the type says `s` is the member written; it is null or a NUL-terminated
        // string living for `'a` (this type's invariant).
        let bytes = unsafe {
            let s = self.p.value.s;
            if s.is_null() {
                return None;
            }
            CStr::from_ptr(s).to_bytes()
        };
        // Valid UTF-8 (nearly always) is borrowed after one fast check.
        Some(match std::str::from_utf8(bytes) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(bytes),
        })
    }
}

/// The parameters of one record (or [`OwnedParams`]), in order.
#[derive(Clone)]
pub struct RawParams<'a>(std::slice::Iter<'a, sys::virTypedParameter>);

impl<'a> Iterator for RawParams<'a> {
    type Item = RawParam<'a>;

    #[inline]
    fn next(&mut self) -> Option<RawParam<'a>> {
        self.0.next().map(|p| RawParam { p })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for RawParams<'_> {}

impl<'a> RawParams<'a> {
    /// The parameter at position `i` among those not yet iterated over.
    #[inline]
    pub fn get(&self, i: usize) -> Option<RawParam<'a>> {
        self.0.as_slice().get(i).map(|p| RawParam { p })
    }
}

/// Views `n` parameters starting at `ptr`.
///
/// # Safety
/// `ptr` must point to `n` initialised parameters (or be null with `n == 0`) satisfying
/// [`decode`]'s contract, living at least as long as `'a`.
unsafe fn raw_from_ptr<'a>(ptr: *const sys::virTypedParameter, n: usize) -> RawParams<'a> {
    let slice: &'a [sys::virTypedParameter] = if ptr.is_null() || n == 0 {
        &[]
    } else {
        // SAFETY: per the contract, `ptr` points to `n` parameters that outlive `'a`.
        unsafe { std::slice::from_raw_parts(ptr, n) }
    };
    RawParams(slice.iter())
}

/// The host-wide CPU times (`virNodeGetCPUStats` over all CPUs, ns) or memory figures
/// (`virNodeGetMemoryStats` over all cells, KiB): each parameter's name and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStatsKind {
    /// `virNodeGetCPUStats(conn, VIR_NODE_CPU_STATS_ALL_CPUS, ...)`.
    Cpu,
    /// `virNodeGetMemoryStats(conn, VIR_NODE_MEMORY_STATS_ALL_CELLS, ...)`.
    Memory,
}

/// Calls `virNodeGetCPUStats` or `virNodeGetMemoryStats` for the whole host: first for the
/// number of parameters, then for their values.
pub fn node_stats(conn: &Connect, kind: NodeStatsKind) -> Result<Vec<(String, u64)>, Error> {
    // Both structs are an 80-byte NUL-terminated name and an unsigned 64-bit value.
    let mut n: std::ffi::c_int = 0;
    let call = |params: *mut sys::virNodeCPUStats, n: &mut std::ffi::c_int| -> std::ffi::c_int {
        // SAFETY: `conn` is open for the duration of the call; `params` is null (libvirt then
        // only stores the count in `n`) or points to `*n` writable structs of the layout the
        // function expects (virNodeCPUStats and virNodeMemoryStats are the same layout, checked
        // by the assertion below).
        unsafe {
            match kind {
                NodeStatsKind::Cpu => sys::virNodeGetCPUStats(
                    conn.as_ptr(),
                    sys::VIR_NODE_CPU_STATS_ALL_CPUS,
                    params,
                    n,
                    0,
                ),
                NodeStatsKind::Memory => sys::virNodeGetMemoryStats(
                    conn.as_ptr(),
                    sys::VIR_NODE_MEMORY_STATS_ALL_CELLS,
                    params.cast::<sys::virNodeMemoryStats>(),
                    n,
                    0,
                ),
            }
        }
    };
    const _: () = assert!(
        std::mem::size_of::<sys::virNodeCPUStats>()
            == std::mem::size_of::<sys::virNodeMemoryStats>()
    );
    if call(std::ptr::null_mut(), &mut n) < 0 {
        return Err(Error::last_error());
    }
    let len = usize::try_from(n).unwrap_or(0);
    if len == 0 {
        return Ok(Vec::new());
    }
    let mut params = vec![
        sys::virNodeCPUStats {
            field: [0; 80],
            value: 0,
        };
        len
    ];
    if call(params.as_mut_ptr(), &mut n) < 0 {
        return Err(Error::last_error());
    }
    let filled = usize::try_from(n).unwrap_or(0).min(len);
    Ok(params[..filled]
        .iter()
        .filter_map(|p| {
            // The field is a fixed buffer; a name without its NUL is skipped.
            let bytes: Vec<u8> = p.field.iter().map(|&c| c as u8).collect();
            let name = CStr::from_bytes_until_nul(&bytes).ok()?;
            Some((name.to_string_lossy().into_owned(), p.value))
        })
        .collect())
}

/// The records of one `virConnectGetAllDomainStats` call, freed on drop.
pub struct StatsList {
    ptr: *mut sys::virDomainStatsRecordPtr,
    len: usize,
}

impl StatsList {
    /// Calls `virConnectGetAllDomainStats(conn, stats, flags)`.
    pub fn fetch(conn: &Connect, stats: u32, flags: u32) -> Result<StatsList, Error> {
        let mut ptr: *mut sys::virDomainStatsRecordPtr = std::ptr::null_mut();
        // SAFETY: `conn` is an open connection for the duration of the call; libvirt stores an
        // array it allocated in `ptr` and returns its length, or -1 without allocating.
        let n = unsafe { sys::virConnectGetAllDomainStats(conn.as_ptr(), stats, &mut ptr, flags) };
        if n < 0 {
            return Err(Error::last_error());
        }
        Ok(StatsList {
            ptr,
            len: n as usize,
        })
    }

    /// Number of records (domains).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the call returned no domain.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The records, in libvirt's order.
    pub fn records(&self) -> impl Iterator<Item = Record<'_>> {
        (0..self.len).filter_map(move |i| {
            // SAFETY: `ptr` holds `len` record pointers (see `fetch`); the list outlives `'_`.
            let rec = unsafe { *self.ptr.add(i) };
            // SAFETY: libvirt never stores a null record in the first `len` entries; checked
            // anyway.
            (!rec.is_null()).then(|| Record {
                rec: unsafe { &*rec },
                _list: PhantomData,
            })
        })
    }
}

impl Drop for StatsList {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: the array came from virConnectGetAllDomainStats and is freed only here.
            unsafe { sys::virDomainStatsRecordListFree(self.ptr) };
        }
    }
}

// SAFETY: the list is plain memory owned by this value; libvirt does not touch it after the
// call returned, so moving it to another thread is fine.
unsafe impl Send for StatsList {}

/// One domain's record in a [`StatsList`].
pub struct Record<'a> {
    rec: &'a sys::virDomainStatsRecord,
    _list: PhantomData<&'a StatsList>,
}

impl<'a> Record<'a> {
    /// A new reference to the record's domain, for per-domain calls and its name, UUID and ID.
    pub fn domain(&self) -> Option<Domain> {
        let dom = self.rec.dom;
        if dom.is_null() {
            return None;
        }
        // SAFETY: the record holds a reference to a valid domain; virDomainRef adds one that the
        // returned `Domain` owns and releases on drop.
        unsafe {
            if sys::virDomainRef(dom) < 0 {
                return None;
            }
            Some(Domain::from_ptr(dom))
        }
    }

    /// The record's typed parameters, decoded (unreadable ones skipped).
    pub fn params(&self) -> impl Iterator<Item = Param<'a>> {
        self.raw_params().filter_map(|p| p.decode())
    }

    /// The record's typed parameters, undecoded.
    pub fn raw_params(&self) -> RawParams<'a> {
        let n = usize::try_from(self.rec.nparams).unwrap_or(0);
        // SAFETY: libvirt filled `params` with `nparams` entries owned by the record, which lives
        // as long as the list (`'a`).
        unsafe { raw_from_ptr(self.rec.params, n) }
    }
}

/// A parameter array built in Rust: the same shape libvirt returns, for tests and for replaying
/// synthetic VMs through the decoder in benchmarks.
#[derive(Default)]
pub struct OwnedParams {
    params: Vec<sys::virTypedParameter>,
    strings: Vec<CString>,
}

/// A value to put into an [`OwnedParams`].
#[derive(Debug, Clone, PartialEq)]
pub enum OwnedValue {
    /// `VIR_TYPED_PARAM_INT`
    Int(i32),
    /// `VIR_TYPED_PARAM_UINT`
    UInt(u32),
    /// `VIR_TYPED_PARAM_LLONG`
    LLong(i64),
    /// `VIR_TYPED_PARAM_ULLONG`
    ULLong(u64),
    /// `VIR_TYPED_PARAM_DOUBLE`
    Double(f64),
    /// `VIR_TYPED_PARAM_BOOLEAN`
    Bool(bool),
    /// `VIR_TYPED_PARAM_STRING` (interior NULs are dropped)
    Str(String),
}

impl OwnedParams {
    /// An empty array.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a parameter. Names longer than 79 bytes are truncated, as libvirt would.
    pub fn push(&mut self, name: &str, value: OwnedValue) {
        let mut field = [0 as c_char; 80];
        for (dst, src) in field
            .iter_mut()
            .zip(name.bytes().filter(|&b| b != 0).take(79))
        {
            *dst = src as c_char;
        }
        let (type_, value) = match value {
            OwnedValue::Int(i) => (sys::VIR_TYPED_PARAM_INT, sys::_virTypedParameterValue { i }),
            OwnedValue::UInt(ui) => (
                sys::VIR_TYPED_PARAM_UINT,
                sys::_virTypedParameterValue { ui },
            ),
            OwnedValue::LLong(l) => (
                sys::VIR_TYPED_PARAM_LLONG,
                sys::_virTypedParameterValue { l },
            ),
            OwnedValue::ULLong(ul) => (
                sys::VIR_TYPED_PARAM_ULLONG,
                sys::_virTypedParameterValue { ul },
            ),
            OwnedValue::Double(d) => (
                sys::VIR_TYPED_PARAM_DOUBLE,
                sys::_virTypedParameterValue { d },
            ),
            OwnedValue::Bool(b) => (
                sys::VIR_TYPED_PARAM_BOOLEAN,
                sys::_virTypedParameterValue { b: c_char::from(b) },
            ),
            OwnedValue::Str(s) => {
                let c = CString::new(s.replace('\0', "")).unwrap_or_default();
                // The CString's heap buffer does not move when the CString is moved into the Vec.
                let ptr = c.as_ptr() as *mut c_char;
                self.strings.push(c);
                (
                    sys::VIR_TYPED_PARAM_STRING,
                    sys::_virTypedParameterValue { s: ptr },
                )
            }
        };
        self.params.push(sys::virTypedParameter {
            field,
            type_: type_ as i32,
            value,
        });
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// True when there is no parameter.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// The parameters, decoded exactly as a libvirt record's are.
    pub fn params(&self) -> impl Iterator<Item = Param<'_>> {
        self.raw_params().filter_map(|p| p.decode())
    }

    /// The parameters, undecoded, as [`Record::raw_params`] gives them.
    pub fn raw_params(&self) -> RawParams<'_> {
        // SAFETY: every string pointer in `params` points into a CString in `strings`, owned by
        // `self` and never mutated, so it outlives the borrow.
        unsafe { raw_from_ptr(self.params.as_ptr(), self.params.len()) }
    }

    /// Fills every name field after its NUL with `byte`, as a C library may leave it (libvirt
    /// zeroes it, but nothing promises that).
    pub fn fill_after_names(&mut self, byte: u8) {
        for p in &mut self.params {
            if let Some(nul) = p.field.iter().position(|&c| c == 0) {
                for c in &mut p.field[nul + 1..] {
                    *c = byte as c_char;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(value: OwnedValue) -> Value<'static> {
        let mut p = OwnedParams::new();
        p.push("some.name", value);
        let got: Vec<_> = p.params().collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "some.name");
        match &got[0].value {
            Value::Str(s) => Value::Str(Cow::Owned(s.to_string())),
            v => v.clone().into_static(),
        }
    }

    impl Value<'_> {
        fn into_static(self) -> Value<'static> {
            match self {
                Value::Str(s) => Value::Str(Cow::Owned(s.into_owned())),
                Value::Int(v) => Value::Int(v),
                Value::UInt(v) => Value::UInt(v),
                Value::LLong(v) => Value::LLong(v),
                Value::ULLong(v) => Value::ULLong(v),
                Value::Double(v) => Value::Double(v),
                Value::Bool(v) => Value::Bool(v),
                Value::Unknown(v) => Value::Unknown(v),
            }
        }
    }

    #[test]
    fn decodes_every_type() {
        assert_eq!(roundtrip(OwnedValue::Int(-7)), Value::Int(-7));
        assert_eq!(roundtrip(OwnedValue::UInt(u32::MAX)), Value::UInt(u32::MAX));
        assert_eq!(
            roundtrip(OwnedValue::LLong(i64::MIN)),
            Value::LLong(i64::MIN)
        );
        assert_eq!(
            roundtrip(OwnedValue::ULLong(u64::MAX)),
            Value::ULLong(u64::MAX)
        );
        assert_eq!(roundtrip(OwnedValue::Double(2.5)), Value::Double(2.5));
        assert_eq!(roundtrip(OwnedValue::Bool(true)), Value::Bool(true));
        assert_eq!(roundtrip(OwnedValue::Bool(false)), Value::Bool(false));
        assert_eq!(
            roundtrip(OwnedValue::Str("vda ü, \\x".into())),
            Value::Str("vda ü, \\x".into())
        );
    }

    #[test]
    fn numeric_conversions() {
        assert_eq!(Value::Int(-1).as_u64(), None);
        assert_eq!(Value::LLong(-1).as_u64(), None);
        assert_eq!(Value::ULLong(u64::MAX).as_u64(), Some(u64::MAX));
        assert_eq!(Value::ULLong(u64::MAX).as_i64(), None);
        assert_eq!(Value::UInt(5).as_i64(), Some(5));
        assert_eq!(Value::Double(1.0).as_u64(), None);
        assert_eq!(Value::Bool(true).as_u64(), None);
        assert_eq!(Value::Str("1".into()).as_u64(), None);
    }

    #[test]
    fn unknown_type_and_long_names() {
        let mut p = OwnedParams::new();
        p.push(&"x".repeat(200), OwnedValue::ULLong(1));
        p.params.push(sys::virTypedParameter {
            field: [b'a' as c_char; 80], // no NUL: unreadable name, skipped
            type_: sys::VIR_TYPED_PARAM_ULLONG as i32,
            value: sys::_virTypedParameterValue { ul: 1 },
        });
        let mut f = [0 as c_char; 80];
        f[0] = b'q' as c_char;
        p.params.push(sys::virTypedParameter {
            field: f,
            type_: 99,
            value: sys::_virTypedParameterValue { ul: 1 },
        });
        let got: Vec<_> = p.params().collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name.len(), 79);
        assert_eq!(
            got[1],
            Param {
                name: "q",
                value: Value::Unknown(99)
            }
        );
    }
}
