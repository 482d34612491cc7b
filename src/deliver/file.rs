//! The `file` sink: line protocol appended to a file, rotated by size.
//!
//! When the file would grow past `max_bytes`, it is renamed to `PATH.1` (older ones shift to
//! `PATH.2`, ... up to `keep`, the oldest is deleted) and a new file is started. A batch is never
//! split across two files.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::text::{write_text, TextEncoder, TextSink};
use super::{Batch, Sink, Written};
use crate::encode::Encoder;

/// Appends batches to a file with size-based rotation.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    out: Option<BufWriter<File>>,
    size: u64,
    text: TextEncoder,
}

fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl FileSink {
    /// A sink writing to `path`, rotating at `max_bytes` and keeping `keep` old files. Creates
    /// the file (not its directory) if needed, so a bad path fails at start-up.
    pub fn open(
        path: &Path,
        max_bytes: u64,
        keep: usize,
        encoder: Encoder,
    ) -> std::io::Result<FileSink> {
        let mut sink = FileSink {
            path: path.to_owned(),
            max_bytes: max_bytes.max(1),
            keep,
            out: None,
            size: 0,
            text: TextEncoder::new(encoder),
        };
        sink.reopen()?;
        Ok(sink)
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot open output file {}: {e}", self.path.display()),
                )
            })?;
        self.size = file.metadata()?.len();
        self.out = Some(BufWriter::new(file));
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if let Some(mut out) = self.out.take() {
            out.flush()?;
        }
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(rotated(&self.path, self.keep));
            for n in (1..self.keep).rev() {
                let from = rotated(&self.path, n);
                if from.exists() {
                    std::fs::rename(&from, rotated(&self.path, n + 1))?;
                }
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        self.reopen()
    }
}

impl TextSink for FileSink {
    fn text(&mut self) -> &mut TextEncoder {
        &mut self.text
    }

    /// Appends `lines` (newline-terminated line protocol) as one batch, rotating first if they
    /// would take the file past `max_bytes`.
    fn write_lines(&mut self, lines: &str) -> std::io::Result<()> {
        let len = lines.len() as u64;
        if self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        if self.out.is_none() {
            self.reopen()?;
        }
        let Some(out) = self.out.as_mut() else {
            return Err(std::io::Error::other("output file is not open"));
        };
        out.write_all(lines.as_bytes())?;
        self.size += len;
        Ok(())
    }
}

impl Sink for FileSink {
    fn name(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn write(&mut self, batch: &Batch) -> std::io::Result<Written> {
        write_text(self, batch)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.out.as_mut() {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_n_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.lp");
        let mut sink = FileSink::open(&path, 25, 2, Encoder::default()).expect("open");
        for i in 0..6 {
            sink.write_lines(&format!("m f={i}i {i}\nm f={i}i {i}\n"))
                .expect("write");
        }
        sink.flush().expect("flush");
        // Each batch is 22 bytes, so every batch after the first starts a new file.
        let read = |p: PathBuf| std::fs::read_to_string(p).expect("file exists");
        assert_eq!(read(path.clone()), "m f=5i 5\nm f=5i 5\n");
        assert_eq!(read(rotated(&path, 1)), "m f=4i 4\nm f=4i 4\n");
        assert_eq!(read(rotated(&path, 2)), "m f=3i 3\nm f=3i 3\n");
        assert!(!rotated(&path, 3).exists());
    }

    #[test]
    fn appends_to_an_existing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.lp");
        std::fs::write(&path, "old 1\n").expect("seed");
        let mut sink = FileSink::open(&path, 1 << 20, 1, Encoder::default()).expect("open");
        sink.write_lines("new 2\n").expect("write");
        sink.flush().expect("flush");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "old 1\nnew 2\n"
        );
    }

    #[test]
    fn a_typed_batch_is_encoded_with_the_sinks_precision() {
        use crate::deliver::batch::{Payload, VmChunk};
        use crate::model::{DomainSample, HostSample};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.lp");
        let encoder = Encoder {
            precision: crate::encode::Precision::Millis,
            global_tags: vec![("dc".into(), "a b".into())],
        };
        let mut sink = FileSink::open(&path, 1 << 20, 1, encoder).expect("open");
        let ts = 1_700_000_000_123_456_789;
        let sample = HostSample {
            host: "h".into(),
            timestamp_ns: ts,
            domains: vec![DomainSample {
                name: "vm 1".into(),
                state: Some(1),
                ..DomainSample::default()
            }],
        };
        let batch = Batch {
            source: "test:///default".into(),
            timestamp_ns: ts,
            payload: Payload::Vms(VmChunk::new(sample, Vec::new(), None)),
            end_of_cycle: true,
        };
        let w = sink.write(&batch).expect("write");
        sink.flush().expect("flush");
        let text = std::fs::read_to_string(&path).expect("read");
        let line = |m: &str| format!("{m},host=h,name=vm\\ 1,dc=a\\ b state=1i 1700000000123\n");
        assert_eq!(text, line("vm_metrics") + &line("vm_totals"));
        assert_eq!(
            w,
            Written {
                lines: 2,
                bytes: text.len() as u64
            }
        );
    }

    #[test]
    fn bad_path_is_a_clear_error() {
        let e = FileSink::open(
            Path::new("/nonexistent-dir/x.lp"),
            10,
            1,
            Encoder::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent-dir/x.lp"), "{e}");
    }
}
