//! The on-disk journal file, `journal.jsonl`: framing, checksums, fsync, torn-tail recovery.
//!
//! This is the only code that touches the journal's bytes. Everything durable about a run
//! passes through [`JournalFile::append`], which writes one whole line and fsyncs it before
//! returning, so "append returned" means "the record survives a power cut".
//!
//! # Framing
//!
//! One record per line, each line a JSON object with its keys in this fixed order:
//!
//! ```text
//! {"seq":3,"at_ms":1795552441123,"rec":{"type":"step-started",…},"crc":"1c291ca3"}\n
//! ```
//!
//! - `seq`: sequence number, 1 for the first line, +1 per line; line *N* holds seq *N*.
//! - `at_ms`: when the record was appended, unix milliseconds.
//! - `skippable` (optional, only `true`): see [`super::record`] on versioning.
//! - `rec`: the [`Record`], tagged by `type`.
//! - `crc`: CRC-32 (IEEE) as 8 lowercase hex digits, of every byte of the line *before*
//!   `,"crc":` — so a line always ends with the 18 bytes `,"crc":"xxxxxxxx"}` and a newline.
//!
//! Each line is valid JSON, so `jq` works on a journal; the checksum makes torn writes exact.
//!
//! # Reading rules
//!
//! - A record is committed only once its newline is on disk: `append` writes the line and its
//!   newline in one `write` and fsyncs before returning, so a caller never acted on a record
//!   that lacks one.
//! - A torn **last** line (no trailing newline, or a final line whose frame or checksum is bad)
//!   is the write that a crash interrupted. It is reported as a [`TornTail`]; opening for
//!   append truncates it, read-only opening leaves the file alone.
//! - A bad line anywhere **else** is [`Error::Corrupt`] naming the line and byte offset. A line
//!   whose checksum is good but whose record is invalid is also an error, even at the end: the
//!   checksum proves it was written whole, so it is never dropped.
//! - Sequence numbers must be contiguous from 1, else [`Error::SequenceGap`].

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::checksum::crc32;
use super::durable;
use super::error::{Error, Result};
use super::record::{FormatVersion, Record};
use super::time;

/// The journal's file name inside a run directory.
pub const FILE_NAME: &str = "journal.jsonl";

/// Length of the fixed line suffix `,"crc":"xxxxxxxx"}` (without the newline).
const CRC_SUFFIX_LEN: usize = 18;

/// One committed record with its position in the file.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Sequence number, from 1; also the 1-based line number.
    pub seq: u64,
    /// When it was appended, unix milliseconds.
    pub at_ms: u64,
    /// Byte offset of the line's start.
    pub offset: u64,
    /// The record.
    pub record: Record,
}

/// An incomplete final line: the write a crash interrupted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// Byte offset where the torn line starts (the file's valid length).
    pub offset: u64,
    /// How many bytes the torn line had.
    pub len: u64,
    /// Why it is considered torn.
    pub reason: String,
    /// Whether it was cut off the file (open for append) or only ignored (read-only).
    pub truncated: bool,
}

impl fmt::Display for TornTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.truncated {
            "truncated"
        } else {
            "ignored"
        };
        write!(
            f,
            "{verb} a torn record at byte {} ({} bytes: {}); it was never committed",
            self.offset, self.len, self.reason
        )
    }
}

/// A record of a type this version does not know, skipped because it was marked skippable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedRecord {
    /// Its sequence number (and line).
    pub seq: u64,
    /// Byte offset of the line's start.
    pub offset: u64,
    /// Its `type`.
    pub record_type: String,
}

/// Everything read from a journal file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Contents {
    /// The committed records, in order.
    pub entries: Vec<Entry>,
    /// Records of unknown, skippable types that were left out of `entries`.
    pub skipped: Vec<SkippedRecord>,
    /// The torn final line, if there was one.
    pub torn: Option<TornTail>,
    /// Length in bytes of the committed part of the file.
    pub valid_len: u64,
    /// The sequence number the next record gets.
    pub next_seq: u64,
}

/// The envelope around each record, as parsed back.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvelope {
    seq: u64,
    at_ms: u64,
    #[serde(default)]
    skippable: bool,
    rec: serde_json::Value,
    #[expect(dead_code, reason = "verified from the raw bytes before parsing")]
    crc: String,
}

/// Encodes one record as a complete line, newline included.
pub fn encode(seq: u64, at_ms: u64, record: &Record) -> Result<Vec<u8>> {
    let rec = serde_json::to_string(record).map_err(|source| Error::Serialize {
        record_type: record.type_name(),
        source,
    })?;
    let skippable = if record.is_skippable() {
        r#","skippable":true"#
    } else {
        ""
    };
    let mut line = format!(r#"{{"seq":{seq},"at_ms":{at_ms}{skippable},"rec":{rec}"#);
    let crc = crc32(line.as_bytes());
    line.push_str(&format!(",\"crc\":\"{crc:08x}\"}}\n"));
    Ok(line.into_bytes())
}

/// How one line failed to decode.
enum LineError {
    /// The frame or checksum is bad: the line may be a torn write.
    Frame(String),
    /// The line was written whole but is not acceptable.
    Hard(Error),
}

/// What one good line holds.
enum Decoded {
    Entry(Entry),
    Skipped(SkippedRecord),
}

/// Checks the frame and checksum of `line` (without its newline).
fn check_frame(line: &[u8]) -> std::result::Result<(), String> {
    if line.len() < CRC_SUFFIX_LEN + 2 {
        return Err(format!("line of {} bytes is too short", line.len()));
    }
    let (body, suffix) = line.split_at(line.len() - CRC_SUFFIX_LEN);
    let hex_digits = suffix
        .strip_prefix(br#","crc":""#)
        .and_then(|s| s.strip_suffix(br#""}"#))
        .ok_or("line does not end with a `crc` field")?;
    let written = std::str::from_utf8(hex_digits)
        .ok()
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or("`crc` is not 8 hex digits")?;
    let actual = crc32(body);
    if written != actual {
        return Err(format!(
            "checksum mismatch: line says {written:08x}, bytes give {actual:08x}"
        ));
    }
    Ok(())
}

/// Decodes one line (without its newline) that starts at `offset` and should hold `seq`.
fn decode_line(
    path: &Path,
    seq: u64,
    offset: u64,
    line: &[u8],
) -> std::result::Result<Decoded, LineError> {
    check_frame(line).map_err(LineError::Frame)?;
    let corrupt = |reason: String| {
        LineError::Hard(Error::Corrupt {
            path: path.to_owned(),
            line: seq,
            offset,
            reason,
        })
    };
    let env: RawEnvelope = serde_json::from_slice(line)
        .map_err(|e| corrupt(format!("checksum is good but the envelope is not: {e}")))?;
    if env.seq != seq {
        return Err(LineError::Hard(Error::SequenceGap {
            path: path.to_owned(),
            line: seq,
            offset,
            expected: seq,
            found: env.seq,
        }));
    }
    let record_type = env
        .rec
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or_default()
        .to_owned();
    if !Record::ALL_TYPES.contains(&record_type.as_str()) {
        if env.skippable {
            tracing::warn!(
                path = %path.display(), line = seq, %record_type,
                "skipping a journal record of an unknown type marked skippable"
            );
            return Ok(Decoded::Skipped(SkippedRecord {
                seq,
                offset,
                record_type,
            }));
        }
        return Err(LineError::Hard(Error::UnknownRecordType {
            path: path.to_owned(),
            line: seq,
            offset,
            record_type,
        }));
    }
    if record_type == "run-started" {
        let version = env
            .rec
            .get("format_version")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let version: FormatVersion = version.parse().map_err(corrupt)?;
        if !version.is_readable() {
            return Err(LineError::Hard(Error::UnsupportedVersion {
                path: path.to_owned(),
                found: version,
                supported: super::record::FORMAT_VERSION.major,
            }));
        }
    }
    let record: Record = serde_json::from_value(env.rec)
        .map_err(|e| corrupt(format!("invalid `{record_type}` record: {e}")))?;
    Ok(Decoded::Entry(Entry {
        seq,
        at_ms: env.at_ms,
        offset,
        record,
    }))
}

/// Parses a whole journal's bytes; `path` is only used in errors. Never modifies anything.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Contents> {
    let mut contents = Contents {
        next_seq: 1,
        ..Contents::default()
    };
    let mut pos = 0_usize;
    while pos < bytes.len() {
        let seq = contents.next_seq;
        let offset = pos as u64;
        let rest = &bytes[pos..];
        let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
            contents.torn = Some(TornTail {
                offset,
                len: rest.len() as u64,
                reason: "no trailing newline".into(),
                truncated: false,
            });
            break;
        };
        let is_last = pos + newline + 1 == bytes.len();
        match decode_line(path, seq, offset, &rest[..newline]) {
            Ok(Decoded::Entry(entry)) => contents.entries.push(entry),
            Ok(Decoded::Skipped(skipped)) => contents.skipped.push(skipped),
            Err(LineError::Frame(reason)) if is_last => {
                contents.torn = Some(TornTail {
                    offset,
                    len: rest.len() as u64,
                    reason,
                    truncated: false,
                });
                break;
            }
            Err(LineError::Frame(reason)) => {
                return Err(Error::Corrupt {
                    path: path.to_owned(),
                    line: seq,
                    offset,
                    reason,
                });
            }
            Err(LineError::Hard(e)) => return Err(e),
        }
        contents.next_seq += 1;
        pos += newline + 1;
    }
    contents.valid_len = pos as u64;
    Ok(contents)
}

/// Reads a journal without modifying it (a torn tail is reported, not truncated).
pub fn read(path: &Path) -> Result<Contents> {
    let bytes = std::fs::read(path).map_err(Error::io("read", path))?;
    parse(path, &bytes)
}

/// A journal file open for appending. Hold the run lock while one exists.
#[derive(Debug)]
pub struct JournalFile {
    path: PathBuf,
    file: File,
    next_seq: u64,
    len: u64,
    poisoned: bool,
}

impl JournalFile {
    /// Creates a new, empty journal at `path` (which must not exist) and makes it durable.
    pub fn create(path: &Path) -> Result<Self> {
        let file = durable::private(OpenOptions::new().read(true).append(true).create_new(true))
            .open(path)
            .map_err(Error::io("create", path))?;
        file.sync_all().map_err(Error::io("fsync", path))?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        durable::sync_dir(dir)?;
        Ok(Self {
            path: path.to_owned(),
            file,
            next_seq: 1,
            len: 0,
            poisoned: false,
        })
    }

    /// Opens an existing journal for appending: reads and validates it, truncates a torn tail
    /// (reported in the returned [`Contents::torn`]), and positions after the last record.
    pub fn open(path: &Path) -> Result<(Self, Contents)> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .map_err(Error::io("open", path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(Error::io("read", path))?;
        let mut contents = parse(path, &bytes)?;
        if let Some(torn) = &mut contents.torn {
            file.set_len(contents.valid_len)
                .map_err(Error::io("truncate", path))?;
            file.sync_all().map_err(Error::io("fsync", path))?;
            torn.truncated = true;
            tracing::warn!(path = %path.display(), "{torn}");
        }
        let journal = Self {
            path: path.to_owned(),
            file,
            next_seq: contents.next_seq,
            len: contents.valid_len,
            poisoned: false,
        };
        Ok((journal, contents))
    }

    /// Appends one record durably: one `write` of the whole line, then `fsync`.
    ///
    /// On an I/O error the file is poisoned (its tail is unknown, and after a failed fsync the
    /// page cache cannot be trusted): every later append fails with [`Error::Poisoned`]. The
    /// caller must stop; `runbook resume` repairs the tail.
    pub fn append(&mut self, record: &Record) -> Result<Entry> {
        self.append_at(record, time::now_ms())
    }

    /// [`JournalFile::append`] with an explicit `at_ms` timestamp.
    pub fn append_at(&mut self, record: &Record, at_ms: u64) -> Result<Entry> {
        if self.poisoned {
            return Err(Error::Poisoned {
                path: self.path.clone(),
            });
        }
        let line = encode(self.next_seq, at_ms, record)?;
        if let Err(source) = self
            .file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
        {
            self.poisoned = true;
            return Err(Error::Io {
                op: "append to",
                path: self.path.clone(),
                source,
            });
        }
        let entry = Entry {
            seq: self.next_seq,
            at_ms,
            offset: self.len,
            record: record.clone(),
        };
        self.next_seq += 1;
        self.len += line.len() as u64;
        Ok(entry)
    }

    /// Appends several records with one `write` and one `fsync` (a group commit): all of them
    /// are durable when this returns. A crash in the middle leaves a prefix of whole records
    /// and at most one torn line, which the reader truncates like any torn tail.
    pub fn append_batch_at(&mut self, records: &[&Record], at_ms: u64) -> Result<Vec<Entry>> {
        if self.poisoned {
            return Err(Error::Poisoned {
                path: self.path.clone(),
            });
        }
        let mut bytes = Vec::new();
        let mut entries = Vec::with_capacity(records.len());
        let (mut seq, mut offset) = (self.next_seq, self.len);
        for record in records {
            let line = encode(seq, at_ms, record)?;
            entries.push(Entry {
                seq,
                at_ms,
                offset,
                record: (*record).clone(),
            });
            seq += 1;
            offset += line.len() as u64;
            bytes.extend_from_slice(&line);
        }
        if let Err(source) = self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data())
        {
            self.poisoned = true;
            return Err(Error::Io {
                op: "append to",
                path: self.path.clone(),
                source,
            });
        }
        self.next_seq = seq;
        self.len = offset;
        Ok(entries)
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The length in bytes of the committed journal, where the next line starts.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no record has been written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The sequence number the next append gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::tests::{header, one_of_each};

    fn five_records() -> Vec<Record> {
        let mut v = vec![Record::RunStarted(header("r1"))];
        v.extend(one_of_each().into_iter().skip(1).take(4));
        v
    }

    fn write_journal(dir: &Path, records: &[Record]) -> (PathBuf, Vec<u8>) {
        let path = dir.join(FILE_NAME);
        let mut file = JournalFile::create(&path).unwrap();
        for r in records {
            file.append(r).unwrap();
        }
        let bytes = std::fs::read(&path).unwrap();
        (path, bytes)
    }

    fn records_of(c: &Contents) -> Vec<Record> {
        c.entries.iter().map(|e| e.record.clone()).collect()
    }

    #[test]
    fn append_then_read_round_trips_every_record_type() {
        let dir = tempfile::tempdir().unwrap();
        let all = one_of_each();
        let (path, bytes) = write_journal(dir.path(), &all);
        let contents = read(&path).unwrap();
        assert_eq!(records_of(&contents), all);
        assert_eq!(contents.torn, None);
        assert_eq!(contents.valid_len, bytes.len() as u64);
        assert_eq!(contents.next_seq, all.len() as u64 + 1);
        for (i, e) in contents.entries.iter().enumerate() {
            assert_eq!(e.seq, i as u64 + 1);
        }
        // Each line is plain JSON.
        for line in String::from_utf8(bytes).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(v["crc"].as_str().unwrap().len() == 8);
        }
    }

    #[test]
    fn encoded_line_has_documented_frame() {
        let rec = Record::StepSkipped {
            step: "a".into(),
            reason: "b".into(),
        };
        let line = String::from_utf8(encode(7, 123, &rec).unwrap()).unwrap();
        let body = r#"{"seq":7,"at_ms":123,"rec":{"type":"step-skipped","step":"a","reason":"b"}"#;
        assert!(line.starts_with(body));
        assert_eq!(
            line,
            format!("{body},\"crc\":\"{:08x}\"}}\n", crc32(body.as_bytes()))
        );
    }

    #[test]
    fn torn_tail_at_every_offset_is_dropped_or_complete() {
        let dir = tempfile::tempdir().unwrap();
        let records = five_records();
        let (_, full) = write_journal(dir.path(), &records);
        let last_start = full[..full.len() - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .unwrap()
            + 1;
        let extra = Record::RunPaused {
            reason: "after repair".into(),
        };
        for cut in last_start..=full.len() {
            let case = tempfile::tempdir().unwrap();
            let path = case.path().join(FILE_NAME);
            std::fs::write(&path, &full[..cut]).unwrap();
            // Read-only: nothing modified, earlier records intact.
            let ro = read(&path).unwrap();
            assert_eq!(std::fs::read(&path).unwrap().len(), cut);
            let (mut file, contents) = JournalFile::open(&path).unwrap();
            assert_eq!(ro.entries, contents.entries);
            if cut == full.len() {
                assert_eq!(records_of(&contents), records, "cut {cut}");
                assert_eq!(contents.torn, None);
            } else {
                assert_eq!(records_of(&contents), records[..4], "cut {cut}");
                if cut == last_start {
                    assert_eq!(contents.torn, None);
                } else {
                    let torn = contents.torn.clone().unwrap();
                    assert_eq!(torn.offset, last_start as u64);
                    assert!(torn.truncated);
                    assert!(
                        torn.to_string()
                            .starts_with(&format!("truncated a torn record at byte {last_start}"))
                    );
                }
                assert_eq!(std::fs::read(&path).unwrap().len(), last_start);
            }
            let appended = file.append(&extra).unwrap();
            assert_eq!(appended.seq, contents.entries.len() as u64 + 1);
            drop(file);
            let after = read(&path).unwrap();
            assert_eq!(after.torn, None);
            assert_eq!(after.entries.last().unwrap().record, extra);
            assert_eq!(
                after.entries[..contents.entries.len()],
                contents.entries[..]
            );
        }
    }

    #[test]
    fn zero_filled_or_bit_flipped_last_line_is_torn() {
        let dir = tempfile::tempdir().unwrap();
        let (path, full) = write_journal(dir.path(), &five_records());
        let last_start = full[..full.len() - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .unwrap()
            + 1;
        // Size extended but the data block never written: zeros, with or without newline.
        let mut zeros = full.clone();
        zeros[last_start..].fill(0);
        std::fs::write(&path, &zeros).unwrap();
        let c = read(&path).unwrap();
        assert_eq!(
            (c.entries.len(), c.torn.unwrap().offset),
            (4, last_start as u64)
        );
        for i in last_start..full.len() - 1 {
            let mut flipped = full.clone();
            flipped[i] ^= 0x01;
            let c = parse(&path, &flipped).unwrap();
            assert_eq!(c.entries.len(), 4, "flip at {i}");
            assert!(c.torn.is_some());
        }
    }

    #[test]
    fn corruption_in_the_middle_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let (path, full) = write_journal(dir.path(), &five_records());
        let starts: Vec<usize> = std::iter::once(0)
            .chain(
                full.iter()
                    .enumerate()
                    .filter(|(_, b)| **b == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .collect();
        for i in starts[1]..starts[2] {
            let mut bad = full.clone();
            bad[i] ^= 0x01;
            std::fs::write(&path, &bad).unwrap();
            let err = read(&path).unwrap_err();
            match &err {
                Error::Corrupt { line, offset, .. } => {
                    assert_eq!((*line, *offset), (2, starts[1] as u64), "flip at {i}");
                }
                other => panic!("flip at {i}: expected corrupt, got {other:?}"),
            }
            assert!(err.to_string().contains("journal.jsonl:2`"), "{err}");
            assert!(JournalFile::open(&path).is_err());
            assert_eq!(
                std::fs::read(&path).unwrap(),
                bad,
                "a failed open must not modify"
            );
        }
    }

    #[test]
    fn sequence_gap_and_duplicate_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let recs = five_records();
        let path = dir.path().join(FILE_NAME);
        let mut bytes = Vec::new();
        for (seq, r) in [(1, &recs[0]), (2, &recs[1]), (4, &recs[2])] {
            bytes.extend(encode(seq, 1, r).unwrap());
        }
        let err = parse(&path, &bytes).unwrap_err();
        assert!(
            matches!(
                err,
                Error::SequenceGap {
                    line: 3,
                    expected: 3,
                    found: 4,
                    ..
                }
            ),
            "{err}"
        );
        // Even as the last line: a well-checksummed record is never treated as torn.
        let mut dup = encode(1, 1, &recs[0]).unwrap();
        dup.extend(encode(1, 1, &recs[1]).unwrap());
        assert!(matches!(
            parse(&path, &dup).unwrap_err(),
            Error::SequenceGap { line: 2, .. }
        ));
    }

    fn raw_line(seq: u64, extra: &str, rec: &str) -> Vec<u8> {
        let body = format!(r#"{{"seq":{seq},"at_ms":1{extra},"rec":{rec}"#);
        format!("{body},\"crc\":\"{:08x}\"}}\n", crc32(body.as_bytes())).into_bytes()
    }

    #[test]
    fn unknown_types_are_skipped_only_when_marked_skippable() {
        let path = Path::new("journal.jsonl");
        let mut bytes = encode(1, 1, &Record::RunStarted(header("r"))).unwrap();
        bytes.extend(raw_line(
            2,
            r#","skippable":true"#,
            r#"{"type":"note","text":"hi"}"#,
        ));
        bytes.extend(encode(3, 1, &Record::AbortRequested { by: "a".into() }).unwrap());
        let c = parse(path, &bytes).unwrap();
        assert_eq!(c.entries.len(), 2);
        assert_eq!(c.skipped[0].record_type, "note");
        assert_eq!(c.next_seq, 4);

        let mut bad = encode(1, 1, &Record::RunStarted(header("r"))).unwrap();
        bad.extend(raw_line(2, "", r#"{"type":"note","text":"hi"}"#));
        let err = parse(path, &bad).unwrap_err();
        assert!(
            matches!(err, Error::UnknownRecordType { line: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn unknown_major_version_is_refused_newer_minor_accepted() {
        let path = Path::new("journal.jsonl");
        let mut v = serde_json::to_value(Record::RunStarted(header("r"))).unwrap();
        v["format_version"] = "2.0".into();
        let err = parse(path, &raw_line(1, "", &v.to_string())).unwrap_err();
        assert!(matches!(err, Error::UnsupportedVersion { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("journal format 2.0 is not supported")
        );
        v["format_version"] = "1.9".into();
        let c = parse(path, &raw_line(1, "", &v.to_string())).unwrap();
        assert_eq!(c.entries.len(), 1);
    }

    #[test]
    fn create_refuses_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = write_journal(dir.path(), &five_records());
        assert!(matches!(
            JournalFile::create(&path),
            Err(Error::Io { op: "create", .. })
        ));
    }
}
