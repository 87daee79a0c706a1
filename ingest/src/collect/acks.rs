//! Which file positions the broker has made durable.
//!
//! Every message read from a file carries the position reading may resume
//! from once it is delivered. Messages of one file are acknowledged in any
//! order; a file's durable position only moves past a message when it and
//! every message sent before it from that file are acknowledged.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::checkpoint::{FileKey, Position};

/// A file being read, as the acknowledgement tracker knows it.
pub type LaneId = u64;

#[derive(Debug)]
struct Lane {
    key: FileKey,
    next_seq: u64,
    /// (sequence, position after it, acknowledged), oldest first.
    pending: VecDeque<(u64, Position, bool)>,
    durable: Position,
    /// The file is gone and read to its end: forget the lane once drained.
    retiring: bool,
}

#[derive(Debug, Default)]
struct State {
    lanes: HashMap<LaneId, Lane>,
    next_lane: LaneId,
    /// Positions of files no longer open, kept so that a later copy of the
    /// same bytes (the gzipped rotation) resumes where the file ended.
    retired: BTreeMap<FileKey, (Position, Instant)>,
    changed: bool,
    /// Files forgotten since the last [`Acks::take_forgotten`], when
    /// someone takes them (`sluice up` prunes their keys from the table's
    /// positions); `None` when nobody does.
    forgotten: Option<Vec<FileKey>>,
}

impl State {
    /// A retiring lane with nothing in flight keeps only its position.
    fn forget_if_drained(&mut self, lane: LaneId) {
        let drained = self
            .lanes
            .get(&lane)
            .is_some_and(|l| l.retiring && l.pending.is_empty());
        if drained && let Some(l) = self.lanes.remove(&lane) {
            self.retired.insert(l.key, (l.durable, Instant::now()));
            self.changed = true;
        }
    }
}

#[derive(Debug, Default)]
pub struct Acks {
    state: Mutex<State>,
}

impl Acks {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere cannot leave this map half-updated.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts tracking the positions of `key`, durable at `start`.
    pub fn open(&self, key: FileKey, start: Position) -> LaneId {
        let mut s = self.lock();
        s.retired.remove(&key);
        let id = s.next_lane;
        s.next_lane += 1;
        s.lanes.insert(
            id,
            Lane {
                key,
                next_seq: 0,
                pending: VecDeque::new(),
                durable: start,
                retiring: false,
            },
        );
        id
    }

    /// A saved or retired position of `key`.
    pub fn known(&self, key: &FileKey) -> Option<Position> {
        let s = self.lock();
        if let Some((p, _)) = s.retired.get(key) {
            return Some(*p);
        }
        s.lanes
            .values()
            .find(|l| &l.key == key)
            .map(|l| l.pending.back().map_or(l.durable, |p| p.1))
    }

    /// Whether a lane is open for `key` (another name of the same bytes).
    pub fn is_open(&self, key: &FileKey) -> bool {
        self.lock().lanes.values().any(|l| &l.key == key)
    }

    /// Seeds positions loaded from the checkpoint file.
    pub fn restore(&self, saved: BTreeMap<FileKey, Position>) {
        let now = Instant::now();
        let mut s = self.lock();
        for (k, p) in saved {
            s.retired.insert(k, (p, now));
        }
    }

    /// Registers a message about to be sent; returns its sequence number.
    pub fn sent(&self, lane: LaneId, after: Position) -> u64 {
        let mut s = self.lock();
        let Some(l) = s.lanes.get_mut(&lane) else {
            return 0;
        };
        let seq = l.next_seq;
        l.next_seq += 1;
        l.pending.push_back((seq, after, false));
        seq
    }

    /// Moves a lane's position without a message (lines that produced no
    /// record: malformed, or the middle of a partial line).
    pub fn advance(&self, lane: LaneId, after: Position) {
        let seq = self.sent(lane, after);
        self.acked(lane, seq);
    }

    pub fn acked(&self, lane: LaneId, seq: u64) {
        let mut s = self.lock();
        let State { lanes, changed, .. } = &mut *s;
        let Some(l) = lanes.get_mut(&lane) else {
            return;
        };
        if let Some(entry) = l.pending.iter_mut().find(|e| e.0 == seq) {
            entry.2 = true;
        }
        while let Some(&(_, pos, true)) = l.pending.front() {
            l.pending.pop_front();
            if l.durable != pos {
                l.durable = pos;
                *changed = true;
            }
        }
        s.forget_if_drained(lane);
    }

    /// The file behind `lane` is gone and fully read.
    pub fn retire(&self, lane: LaneId) {
        let mut s = self.lock();
        if let Some(l) = s.lanes.get_mut(&lane) {
            l.retiring = true;
        }
        s.forget_if_drained(lane);
    }

    /// Messages sent but not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.lock()
            .lanes
            .values()
            .map(|l| l.pending.iter().filter(|p| !p.2).count())
            .sum()
    }

    /// The positions to save, if any changed since the last call. Retired
    /// positions older than `forget_after` are dropped unless their file is
    /// still on disk (`on_disk`: a gzipped rotation lives as long as its pod).
    pub fn snapshot(
        &self,
        forget_after: Duration,
        on_disk: &HashSet<FileKey>,
    ) -> Option<BTreeMap<FileKey, Position>> {
        let mut s = self.lock();
        let before = s.retired.len();
        let mut gone = Vec::new();
        s.retired.retain(|k, (_, at)| {
            let keep = at.elapsed() < forget_after || on_disk.contains(k);
            if !keep {
                gone.push(k.clone());
            }
            keep
        });
        if s.retired.len() != before {
            s.changed = true;
        }
        if let Some(forgotten) = s.forgotten.as_mut() {
            forgotten.extend(gone);
        }
        if !s.changed {
            return None;
        }
        s.changed = false;
        let mut out: BTreeMap<FileKey, Position> = s
            .retired
            .iter()
            .map(|(k, (p, _))| (k.clone(), *p))
            .collect();
        for l in s.lanes.values() {
            out.insert(l.key.clone(), l.durable);
        }
        Some(out)
    }

    /// From now on, files forgotten (gone, read to their end, and retired
    /// longer than the forget time) are kept for [`Self::take_forgotten`].
    pub fn track_forgotten(&self) {
        self.lock().forgotten.get_or_insert_with(Vec::new);
    }

    /// The files forgotten since the last call.
    pub fn take_forgotten(&self) -> Vec<FileKey> {
        self.lock()
            .forgotten
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Marks the last snapshot as not saved (the write failed).
    pub fn unsaved(&self) {
        self.lock().changed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(fp: &str) -> FileKey {
        FileKey {
            pod_uid: "u".into(),
            container: "c".into(),
            restart: 0,
            fingerprint: fp.into(),
        }
    }

    fn at(offset: u64) -> Position {
        Position {
            offset,
            generation: 0,
        }
    }

    #[test]
    fn position_moves_only_past_a_contiguous_acknowledged_prefix() {
        let acks = Acks::default();
        let lane = acks.open(key("a"), at(0));
        let s1 = acks.sent(lane, at(10));
        let s2 = acks.sent(lane, at(20));
        let s3 = acks.sent(lane, at(30));
        acks.acked(lane, s2);
        acks.acked(lane, s3);
        let snap = acks.snapshot(Duration::from_secs(60), &HashSet::new());
        // Nothing changed yet: message 1 is still out.
        assert_eq!(snap, None);
        acks.acked(lane, s1);
        let snap = acks
            .snapshot(Duration::from_secs(60), &HashSet::new())
            .unwrap();
        assert_eq!(snap[&key("a")], at(30));
        assert_eq!(acks.in_flight(), 0);
    }

    #[test]
    fn retired_positions_survive_for_the_gzipped_copy() {
        let acks = Acks::default();
        let lane = acks.open(key("a"), at(0));
        let s = acks.sent(lane, at(50));
        acks.retire(lane);
        assert!(acks.is_open(&key("a")), "still waiting for its message");
        acks.acked(lane, s);
        assert!(!acks.is_open(&key("a")));
        assert_eq!(acks.known(&key("a")), Some(at(50)));
        let snap = acks
            .snapshot(Duration::from_secs(60), &HashSet::new())
            .unwrap();
        assert_eq!(snap[&key("a")], at(50));
        let snap = acks.snapshot(Duration::ZERO, &HashSet::new());
        assert!(snap.unwrap().is_empty(), "forgotten after the grace period");
    }
}
