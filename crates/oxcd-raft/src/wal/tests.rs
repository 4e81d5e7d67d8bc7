//! WAL tests: round trips, overwrites, segment rolls, torn tails,
//! corruption detection, release, and a model-based proptest.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use raft::eraftpb::{ConfState, Entry, HardState};

use super::*;

fn ent(index: u64, term: u64, data: &[u8]) -> Entry {
    Entry {
        index,
        term,
        data: data.to_vec().into(),
        ..Default::default()
    }
}

fn hs(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..Default::default()
    }
}

fn small() -> WalOptions {
    WalOptions {
        segment_size: 1024,
        ..WalOptions::default()
    }
}

fn segs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

fn indexes(c: &WalContents) -> Vec<(u64, u64)> {
    c.entries.iter().map(|e| (e.index, e.term)).collect()
}

#[test]
fn round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let (mut wal, c) = Wal::open(&dir).unwrap();
    assert_eq!(c, WalContents::default());
    let ents: Vec<_> = (1..=10)
        .map(|i| ent(i, 1, format!("v{i}").as_bytes()))
        .collect();
    wal.save(&ents, Some(&hs(1, 1, 7))).unwrap();
    let cs = ConfState::from((vec![1, 2, 3], vec![]));
    wal.save_conf_state(&cs).unwrap();
    drop(wal);
    let (_, c) = Wal::open(&dir).unwrap();
    assert_eq!(c.entries, ents);
    assert_eq!(c.hard_state, hs(1, 1, 7));
    assert_eq!(c.conf_state, Some(cs));
    assert_eq!(c.snapshot, None);
}

/// Entries and term/vote changes are synced; a hard state that moved only its
/// commit index is written (it is read back) but not synced until the next
/// synced write or an explicit `sync`.
#[test]
fn commit_only_hard_state_is_written_without_fsync() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let (mut wal, _) = Wal::open(&dir).unwrap();
    let base = wal.data_syncs();
    wal.save(&[ent(1, 1, b"a")], Some(&hs(1, 1, 0))).unwrap();
    assert_eq!(wal.data_syncs(), base + 1, "entries are synced");
    wal.save(&[], Some(&hs(1, 1, 1))).unwrap();
    assert_eq!(
        wal.data_syncs(),
        base + 1,
        "a commit-only change is not synced"
    );
    wal.sync().unwrap();
    assert_eq!(
        wal.data_syncs(),
        base + 2,
        "sync flushes the unsynced write"
    );
    wal.sync().unwrap();
    assert_eq!(wal.data_syncs(), base + 2, "nothing left to sync");
    wal.save(&[], Some(&hs(2, 1, 1))).unwrap();
    assert_eq!(wal.data_syncs(), base + 3, "a new term is synced");
    wal.save(&[], Some(&hs(2, 3, 1))).unwrap();
    assert_eq!(wal.data_syncs(), base + 4, "a new vote is synced");
    wal.save(&[], Some(&hs(2, 3, 2))).unwrap();
    drop(wal);
    let (_, c) = Wal::open(&dir).unwrap();
    assert_eq!(
        c.hard_state,
        hs(2, 3, 2),
        "the unsynced commit was still written"
    );
}

#[test]
fn overwrite_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(tmp.path()).unwrap();
    wal.save(&(1..=10).map(|i| ent(i, 1, b"a")).collect::<Vec<_>>(), None)
        .unwrap();
    wal.save(&(6..=8).map(|i| ent(i, 2, b"b")).collect::<Vec<_>>(), None)
        .unwrap();
    assert_eq!(wal.last_index(), 8);
    drop(wal);
    let (_, c) = Wal::open(tmp.path()).unwrap();
    let want: Vec<_> = (1..=5)
        .map(|i| (i, 1))
        .chain((6..=8).map(|i| (i, 2)))
        .collect();
    assert_eq!(indexes(&c), want);
}

#[test]
fn entry_gap_is_rejected_on_read() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(tmp.path()).unwrap();
    wal.save(&[ent(1, 1, b"a"), ent(3, 1, b"c")], None).unwrap();
    drop(wal);
    let err = Wal::open(tmp.path()).unwrap_err();
    assert!(err.to_string().contains("index gap"), "{err}");
}

#[test]
fn reopen_across_segment_rolls() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open_with(tmp.path(), small()).unwrap();
    let mut want = Vec::new();
    for i in 1..=300u64 {
        let e = ent(i, 1 + i / 100, &[i as u8; 20]);
        want.push(e.clone());
        wal.save(&[e], Some(&hs(1 + i / 100, 1, i))).unwrap();
    }
    drop(wal);
    assert!(segs(tmp.path()).len() > 5);
    let (mut wal, c) = Wal::open_with(tmp.path(), small()).unwrap();
    assert_eq!(c.entries, want);
    assert_eq!(c.hard_state, hs(4, 1, 300));
    // Keep appending after reopen, in one large batch spanning rolls.
    let more: Vec<_> = (301..=400).map(|i| ent(i, 4, &[1; 30])).collect();
    wal.save(&more, None).unwrap();
    want.extend(more);
    drop(wal);
    let (_, c) = Wal::open_with(tmp.path(), small()).unwrap();
    assert_eq!(c.entries, want);
    assert_eq!(c.hard_state, hs(4, 1, 300));
}

/// Writes entries 1..=n, one record per save, returning the file offsets
/// of each entry record's start and the end of the data. The segment is then
/// cut to its data, as a roll leaves it (or a filesystem without
/// preallocation), so tests can append, cut and copy it cheaply.
fn write_single_records(dir: &Path, n: u64) -> (Vec<u64>, u64) {
    let (mut wal, _) = Wal::open(dir).unwrap();
    let mut offs = Vec::new();
    for i in 1..=n {
        offs.push(wal.seg_len);
        wal.save(&[ent(i, 1, format!("payload-{i}").as_bytes())], None)
            .unwrap();
    }
    let end = wal.seg_len;
    drop(wal);
    cut(&segs(dir)[0], end);
    (offs, end)
}

fn cut(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Whether the file holds nothing but zeros from `from` on.
fn zeros_from(path: &Path, from: u64) -> bool {
    fs::read(path).unwrap()[from as usize..]
        .iter()
        .all(|&b| b == 0)
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for p in segs(from) {
        fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

#[test]
fn torn_tail_at_every_offset_of_last_record() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    let (offs, end) = write_single_records(&base, 5);
    let start = offs[4];
    for cut in start..end {
        let d = tmp.path().join(format!("cut{cut}"));
        copy_dir(&base, &d);
        let f = &segs(&d)[0];
        OpenOptions::new()
            .write(true)
            .open(f)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let (mut wal, c) = Wal::open(&d).unwrap();
        assert_eq!(
            indexes(&c),
            (1..=4).map(|i| (i, 1)).collect::<Vec<_>>(),
            "cut {cut}"
        );
        assert!(zeros_from(f, start), "torn record removed (cut {cut})");
        // The repaired log accepts appends and reopens cleanly.
        wal.save(&[ent(5, 2, b"again")], None).unwrap();
        drop(wal);
        let (_, c) = Wal::open(&d).unwrap();
        assert_eq!(c.entries.last().unwrap().term, 2);
        fs::remove_dir_all(&d).unwrap();
    }
}

#[test]
fn trailing_zeros_are_unused_space_not_damage() {
    let tmp = tempfile::tempdir().unwrap();
    write_single_records(tmp.path(), 3);
    let f = segs(tmp.path())[0].clone();
    OpenOptions::new()
        .append(true)
        .open(&f)
        .unwrap()
        .write_all(&[0u8; 4096])
        .unwrap();
    let (mut wal, c) = Wal::open(tmp.path()).unwrap();
    assert_eq!(c.entries.len(), 3);
    wal.save(&[ent(4, 1, b"four")], None).unwrap();
    drop(wal);
    let (_, c) = Wal::open(tmp.path()).unwrap();
    assert_eq!(c.entries.len(), 4);
    let broken: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .to_string_lossy()
                .ends_with(".broken")
        })
        .collect();
    assert!(broken.is_empty(), "nothing was repaired");
}

#[test]
fn segments_are_preallocated_and_cut_when_rolled() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        segment_size: 64 * 1024,
        ..WalOptions::default()
    };
    let (mut wal, _) = Wal::open_with(tmp.path(), opts.clone()).unwrap();
    let first = segs(tmp.path())[0].clone();
    // tmpfs may refuse fallocate: then the file simply grows, which is also correct.
    let preallocated = fs::metadata(&first).unwrap().len() == 64 * 1024;
    for i in 1..=200 {
        wal.save(&[ent(i, 1, &[7u8; 1000])], None).unwrap();
    }
    drop(wal);
    let all = segs(tmp.path());
    assert!(all.len() >= 3, "rolled: {all:?}");
    for p in &all[..all.len() - 1] {
        let len = fs::metadata(p).unwrap().len();
        let data = fs::read(p).unwrap();
        assert_eq!(
            data.last().copied().map(|b| b != 0),
            Some(true),
            "{p:?} cut to its data"
        );
        assert!(len < 64 * 1024 + 2048, "{p:?}: {len}");
    }
    if preallocated {
        let last = all.last().unwrap();
        assert_eq!(fs::metadata(last).unwrap().len(), 64 * 1024);
    }
    let (_, c) = Wal::open_with(tmp.path(), opts).unwrap();
    assert_eq!(c.entries.len(), 200);
    assert_eq!(c.entries.last().unwrap().index, 200);
}

fn flip(path: &Path, off: u64) {
    let mut b = fs::read(path).unwrap();
    b[off as usize] ^= 0x10;
    fs::write(path, b).unwrap();
}

#[test]
fn flipped_bit_in_middle_record_of_last_segment_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let (offs, _) = write_single_records(tmp.path(), 5);
    let f = segs(tmp.path())[0].clone();
    flip(&f, offs[2] + 12);
    match Wal::open(tmp.path()).unwrap_err() {
        WalError::Corrupt { file, offset, .. } => {
            assert_eq!(file, f);
            assert_eq!(offset, offs[2]);
        }
        e => panic!("unexpected {e}"),
    }
}

/// Writes entries whose payloads are large and mostly zero (so a record spans whole
/// zero-filled 512-byte sectors), one record per save.
fn write_zero_heavy_records(dir: &Path, n: u64) -> Vec<u64> {
    let (mut wal, _) = Wal::open(dir).unwrap();
    let mut offs = Vec::new();
    for i in 1..=n {
        offs.push(wal.seg_len);
        let mut data = vec![0u8; 2048];
        data[0] = i as u8;
        wal.save(&[ent(i, 1, &data)], None).unwrap();
    }
    offs
}

fn assert_corrupt_at(dir: &Path, file: &Path, at: u64) {
    match Wal::open(dir).unwrap_err() {
        WalError::Corrupt {
            file: f, offset, ..
        } => {
            assert_eq!(f, file);
            assert_eq!(offset, at);
        }
        e => panic!("unexpected {e}"),
    }
}

#[test]
fn flipped_bit_in_crc_field_of_middle_record_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let (offs, _) = write_single_records(tmp.path(), 5);
    let f = segs(tmp.path())[0].clone();
    let before = fs::read(&f).unwrap();
    // Bytes 5..9 of a record hold its crc: damage there must not read as a torn tail.
    flip(&f, offs[2] + 6);
    assert_corrupt_at(tmp.path(), &f, offs[2]);
    // Refusing to start changed nothing on disk.
    let mut after = fs::read(&f).unwrap();
    after[(offs[2] + 6) as usize] ^= 0x10;
    assert_eq!(before, after);
}

#[test]
fn flipped_bit_in_record_with_zero_sectors_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let offs = write_zero_heavy_records(tmp.path(), 5);
    let f = segs(tmp.path())[0].clone();
    flip(&f, offs[2] + 20);
    assert_corrupt_at(tmp.path(), &f, offs[2]);
}

#[test]
fn flipped_bit_in_seed_record_of_last_segment_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    write_single_records(tmp.path(), 5);
    let f = segs(tmp.path())[0].clone();
    flip(&f, 6);
    assert_corrupt_at(tmp.path(), &f, 0);
    assert!(f.exists(), "the segment must not be deleted");
}

#[test]
fn torn_tail_bytes_are_kept_beside_the_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, end) = write_single_records(tmp.path(), 3);
    let f = segs(tmp.path())[0].clone();
    OpenOptions::new()
        .append(true)
        .open(&f)
        .unwrap()
        .write_all(&[40, 0, 0, 0, 1, 9, 9])
        .unwrap();
    let (_, c) = Wal::open(tmp.path()).unwrap();
    assert_eq!(c.entries.len(), 3);
    assert!(zeros_from(&f, end), "garbage removed");
    let mut broken = f.as_os_str().to_owned();
    broken.push(".broken");
    assert_eq!(
        fs::read(PathBuf::from(broken)).unwrap(),
        [40, 0, 0, 0, 1, 9, 9]
    );
}

#[test]
fn flipped_bit_in_non_last_segment_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open_with(tmp.path(), small()).unwrap();
    for i in 1..=100u64 {
        wal.save(&[ent(i, 1, &[7; 40])], None).unwrap();
    }
    drop(wal);
    let files = segs(tmp.path());
    assert!(files.len() >= 3);
    let victim = &files[1];
    let len = fs::metadata(victim).unwrap().len();
    flip(victim, len / 2);
    let err = Wal::open_with(tmp.path(), small()).unwrap_err();
    let msg = err.to_string();
    match err {
        WalError::Corrupt { file, offset, .. } => {
            assert_eq!(&file, victim);
            assert!(offset <= len / 2);
            assert!(msg.contains(&format!("offset {offset}")), "{msg}");
            assert!(
                msg.contains(victim.file_name().unwrap().to_str().unwrap()),
                "{msg}"
            );
            assert!(!msg.contains('\n'));
        }
        e => panic!("unexpected {e}"),
    }
}

#[test]
fn missing_middle_segment_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open_with(tmp.path(), small()).unwrap();
    for i in 1..=100u64 {
        wal.save(&[ent(i, 1, &[7; 40])], None).unwrap();
    }
    drop(wal);
    let files = segs(tmp.path());
    fs::remove_file(&files[1]).unwrap();
    let err = Wal::open_with(tmp.path(), small()).unwrap_err();
    assert!(
        matches!(err, WalError::Corrupt { ref file, .. } if file == &files[2]),
        "{err}"
    );
}

#[test]
fn missing_first_segment_without_snapshot_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open_with(tmp.path(), small()).unwrap();
    for i in 1..=100u64 {
        wal.save(&[ent(i, 1, &[7; 40])], None).unwrap();
    }
    drop(wal);
    fs::remove_file(&segs(tmp.path())[0]).unwrap();
    let err = Wal::open_with(tmp.path(), small()).unwrap_err();
    assert!(matches!(err, WalError::Corrupt { .. }), "{err}");
}

#[test]
fn empty_last_segment_is_removed() {
    let tmp = tempfile::tempdir().unwrap();
    write_single_records(tmp.path(), 3);
    let empty = tmp.path().join(segment::file_name(1, 4));
    fs::File::create(&empty).unwrap();
    let (mut wal, c) = Wal::open(tmp.path()).unwrap();
    assert_eq!(c.entries.len(), 3);
    assert!(!empty.exists());
    wal.save(&[ent(4, 1, b"x")], None).unwrap();
    drop(wal);
    let (_, c) = Wal::open(tmp.path()).unwrap();
    assert_eq!(c.entries.len(), 4);
}

#[test]
fn torn_header_of_new_last_segment_is_removed() {
    let tmp = tempfile::tempdir().unwrap();
    write_single_records(tmp.path(), 3);
    // Crash while writing the crc seed of a freshly rolled segment.
    let torn = tmp.path().join(segment::file_name(1, 4));
    fs::write(&torn, [5u8, 0, 0]).unwrap();
    let (_, c) = Wal::open(tmp.path()).unwrap();
    assert_eq!(c.entries.len(), 3);
    assert!(!torn.exists());
}

#[test]
fn missing_dir_is_fresh() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b/wal");
    let (mut wal, c) = Wal::open(&dir).unwrap();
    assert_eq!(c, WalContents::default());
    wal.save(&[ent(1, 1, b"x")], None).unwrap();
    assert_eq!(segs(&dir).len(), 1);
}

#[test]
fn release_to_bounds_segments_and_reopens() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open_with(tmp.path(), small()).unwrap();
    let cs = ConfState::from((vec![1], vec![]));
    for i in 1..=200u64 {
        wal.save(&[ent(i, 1, &[7; 40])], Some(&hs(1, 1, i)))
            .unwrap();
    }
    // No marker yet: nothing may be released.
    assert_eq!(wal.release_to(150).unwrap(), 0);
    let before = wal.segment_count();
    wal.save_snapshot_marker(150, 1, &cs).unwrap();
    let removed = wal.release_to(150).unwrap();
    assert!(removed > 0 && wal.segment_count() < before);
    assert_eq!(segs(tmp.path()).len(), wal.segment_count());
    drop(wal);
    let (mut wal, c) = Wal::open_with(tmp.path(), small()).unwrap();
    assert_eq!(c.snapshot, Some((150, 1, cs.clone())));
    assert_eq!(indexes(&c), (151..=200).map(|i| (i, 1)).collect::<Vec<_>>());
    assert_eq!(c.hard_state, hs(1, 1, 200));
    // Appending after a release keeps working across rolls.
    for i in 201..=300u64 {
        wal.save(&[ent(i, 1, &[7; 40])], None).unwrap();
    }
    wal.save_snapshot_marker(290, 1, &cs).unwrap();
    wal.release_to(290).unwrap();
    assert!(wal.segment_count() <= 3);
    drop(wal);
    let (_, c) = Wal::open_with(tmp.path(), small()).unwrap();
    assert_eq!(indexes(&c), (291..=300).map(|i| (i, 1)).collect::<Vec<_>>());
}

#[test]
fn membership_keeps_its_index_and_older_markers_do_not_hide_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open_with(tmp.path(), small()).unwrap();
    let one = ConfState::from((vec![1], vec![]));
    let two = ConfState::from((vec![1], vec![2]));
    wal.save_conf_state(&one).unwrap();
    for i in 1..=60u64 {
        wal.save(&[ent(i, 1, &[7; 40])], Some(&hs(1, 1, i)))
            .unwrap();
        if i == 10 {
            wal.save_conf_state_at(10, &two).unwrap();
        }
    }
    // A compaction marker below the change carries the membership as of its index.
    wal.save_snapshot_marker(5, 1, &one).unwrap();
    drop(wal);
    let (mut wal, c) = Wal::open_with(tmp.path(), small()).unwrap();
    assert_eq!(
        (c.conf_state.as_ref(), c.conf_state_index),
        (Some(&two), 10)
    );
    assert_eq!(c.snapshot, Some((5, 1, one.clone())));
    // Segment headers repeat it: still there once the older segments are gone.
    let before = wal.segment_count();
    wal.save_snapshot_marker(40, 1, &two).unwrap();
    assert!(wal.release_to(40).unwrap() > 0 && wal.segment_count() < before);
    for i in 61..=80u64 {
        wal.save(&[ent(i, 1, &[7; 40])], None).unwrap();
    }
    drop(wal);
    let (_, c) = Wal::open_with(tmp.path(), small()).unwrap();
    assert_eq!(
        (c.conf_state.as_ref(), c.conf_state_index),
        (Some(&two), 40)
    );
    assert_eq!(c.entries.first().map(|e| e.index), Some(41));
}

#[test]
fn installed_snapshot_replaces_the_log_and_keeps_its_data_until_a_later_marker() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open_with(tmp.path(), small()).unwrap();
    let cs = ConfState::from((vec![1], vec![2]));
    // A log that does not match the leader's from index 20 on.
    wal.save(
        &(1..=30).map(|i| ent(i, 1, b"old")).collect::<Vec<_>>(),
        None,
    )
    .unwrap();
    wal.install_snapshot(20, 2, &cs, b"backend v7").unwrap();
    assert_eq!(wal.last_index(), 20);
    drop(wal);
    let (mut wal, c) = Wal::open_with(tmp.path(), small()).unwrap();
    assert!(
        c.entries.is_empty(),
        "stale entries survived: {:?}",
        indexes(&c)
    );
    assert_eq!(c.snapshot, Some((20, 2, cs.clone())));
    assert_eq!(c.snapshot_data.as_deref(), Some(&b"backend v7"[..]));
    assert_eq!((c.conf_state.as_ref(), c.conf_state_index), (Some(&cs), 20));

    // The leader's entries follow across segment rolls (whose headers repeat
    // the marker and its data); the install record's segment is never
    // released before a later marker.
    for i in 21..=80u64 {
        wal.save(&[ent(i, 2, &[9; 40])], Some(&hs(2, 1, i)))
            .unwrap();
    }
    assert!(wal.segment_count() > 2);
    assert_eq!(wal.release_to(80).unwrap(), 0);
    drop(wal);
    let (mut wal, c) = Wal::open_with(tmp.path(), small()).unwrap();
    assert_eq!(c.snapshot_data.as_deref(), Some(&b"backend v7"[..]));
    assert_eq!(indexes(&c), (21..=80).map(|i| (i, 2)).collect::<Vec<_>>());

    // A marker of the member's own supersedes it.
    wal.save_snapshot_marker(50, 2, &cs).unwrap();
    drop(wal);
    let (_, c) = Wal::open_with(tmp.path(), small()).unwrap();
    assert_eq!(c.snapshot_data, None);
    assert_eq!(c.entries.first().map(|e| e.index), Some(51));
}

#[test]
fn corrupt_display_is_one_line_with_file_and_offset() {
    let e = WalError::corrupt(
        Path::new("/d/0000000000000000-0000000000000001.wal"),
        42,
        "crc mismatch",
    );
    let s = e.to_string();
    assert!(s.contains("/d/0000000000000000-0000000000000001.wal at offset 42: crc mismatch"));
    assert!(!s.contains('\n'));
}

#[derive(Debug, Clone)]
enum Op {
    /// Append `n` entries starting `back` indexes before the end (overwrite).
    Append {
        back: u64,
        n: u64,
        term: u64,
        len: usize,
    },
    Hs(u64),
    /// Install a received snapshot at `ahead - 3` past the last index (it may
    /// cut the log or leave a gap), with data of `len` bytes.
    Install {
        ahead: u64,
        len: usize,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u64..4, 1u64..8, 1u64..4, 0usize..120).prop_map(|(back, n, term, len)| Op::Append { back, n, term, len }),
        1 => (0u64..100).prop_map(Op::Hs),
        1 => (0u64..8, 0usize..200).prop_map(|(ahead, len)| Op::Install { ahead, len }),
        1 => Just(Op::Reopen),
    ]
}

/// What the WAL must give back: the log after the snapshot, the hard state,
/// the snapshot index and its data.
#[derive(Default)]
struct Model {
    snapshot: u64,
    entries: Vec<Entry>,
    hs: HardState,
    data: Option<Vec<u8>>,
}

impl Model {
    fn last(&self) -> u64 {
        self.snapshot + self.entries.len() as u64
    }

    fn check(&self, c: &WalContents) -> Result<(), TestCaseError> {
        prop_assert_eq!(&c.entries, &self.entries);
        prop_assert_eq!(&c.hard_state, &self.hs);
        prop_assert_eq!(c.snapshot.as_ref().map_or(0, |s| s.0), self.snapshot);
        prop_assert_eq!(&c.snapshot_data, &self.data);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_appends_match_model(ops in proptest::collection::vec(op(), 1..40)) {
        let tmp = tempfile::tempdir().unwrap();
        let opts = WalOptions { segment_size: 512, ..WalOptions::default() };
        let (mut wal, _) = Wal::open_with(tmp.path(), opts.clone()).unwrap();
        let cs = ConfState::from((vec![1], vec![]));
        let mut model = Model::default();
        let mut seq = 0u8;
        for op in ops {
            match op {
                Op::Append { back, n, term, len } => {
                    let start = (model.last() + 1).saturating_sub(back).max(model.snapshot + 1);
                    let ents: Vec<_> = (start..start + n)
                        .map(|i| { seq = seq.wrapping_add(1); ent(i, term, &vec![seq; len]) })
                        .collect();
                    model.entries.truncate((start - model.snapshot - 1) as usize);
                    model.entries.extend(ents.iter().cloned());
                    wal.save(&ents, None).unwrap();
                }
                Op::Hs(c) => {
                    model.hs = hs(c, 1, c);
                    wal.save(&[], Some(&model.hs)).unwrap();
                }
                Op::Install { ahead, len } => {
                    let index = (model.last() + ahead).saturating_sub(3).max(model.snapshot + 1);
                    seq = seq.wrapping_add(1);
                    let data = vec![seq; len];
                    wal.install_snapshot(index, 4, &cs, &data).unwrap();
                    model.snapshot = index;
                    model.entries.clear();
                    model.data = Some(data);
                }
                Op::Reopen => {
                    drop(wal);
                    let (w, c) = Wal::open_with(tmp.path(), opts.clone()).unwrap();
                    model.check(&c)?;
                    wal = w;
                }
            }
        }
        drop(wal);
        let (_, c) = Wal::open_with(tmp.path(), opts).unwrap();
        model.check(&c)?;
    }
}

/// A busy WAL prepares the next segment written with zeros and moves onto it as soon as
/// it is ready; the prepared file is never taken for a segment (nor a leftover one after
/// a crash), its pages are read ahead of the appends, and everything written before and
/// after the move is recovered.
#[test]
fn a_busy_wal_moves_onto_a_zero_written_segment() {
    let tmp = tempfile::tempdir().unwrap();
    if oxcd_fs::is_tmpfs(tmp.path()) {
        return; // never prepared on a tmpfs: nothing to check
    }
    let opts = WalOptions {
        segment_size: 256 * 1024,
        ..WalOptions::default()
    };
    // A leftover of a preparation cut short by a crash.
    fs::write(tmp.path().join(segment::PREPARED), b"torn").unwrap();
    let (mut wal, c) = Wal::open_with(tmp.path(), opts.clone()).unwrap();
    assert!(c.entries.is_empty());
    let mut next = 1;
    // Every save is one data fdatasync; after BUSY_AFTER_SYNCS the preparation starts.
    while wal.data_syncs() < BUSY_AFTER_SYNCS {
        wal.save(&[ent(next, 1, b"x")], None).unwrap();
        next += 1;
    }
    assert!(!wal.zeroed);
    let handle = wal.preparing.take().expect("a preparation started");
    let file = handle.join().unwrap().unwrap();
    wal.prepared = Some(file);
    let before = segs(tmp.path()).len();
    wal.save(&[ent(next, 1, b"y")], None).unwrap();
    assert!(wal.zeroed, "the WAL moved onto the prepared segment");
    let after = segs(tmp.path());
    assert_eq!(after.len(), before + 1);
    let current = after.last().unwrap();
    assert_eq!(fs::metadata(current).unwrap().len(), 256 * 1024);
    let bytes = fs::read(current).unwrap();
    let data_end = wal.seg_len as usize;
    assert!(
        bytes[data_end..].iter().all(|b| *b == 0),
        "zeros after the data"
    );
    #[cfg(unix)]
    for seg in &after {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(seg).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode,
            0o600,
            "{} is private to the member, as etcd's",
            seg.display()
        );
    }
    for _ in 0..50 {
        next += 1;
        wal.save(&[ent(next, 1, b"z")], None).unwrap();
        // The page cache was asked for the zeros past every append before it was made,
        // so no append waits for the kernel to read its page from the disk.
        assert!(
            wal.read_ahead_to > wal.seg_len,
            "read ahead to {}, appended to {}",
            wal.read_ahead_to,
            wal.seg_len
        );
    }
    drop(wal);
    let (_, c) = Wal::open_with(tmp.path(), opts).unwrap();
    let got: Vec<u64> = c.entries.iter().map(|e| e.index).collect();
    assert_eq!(got, (1..=next).collect::<Vec<_>>());
}
