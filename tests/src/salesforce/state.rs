//! The simulated org's state: records per object (indexed by id and external-id values, with
//! the journal that rolls back an `allOrNone` Composite request), sessions, the daily API count,
//! the requests the simulator saw and the changes it committed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::faults::Faults;

use super::{Change, LoggedRequest, SfSimConfig, schema};

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) username: String,
    pub(super) expires: Instant,
}

#[derive(Default)]
pub(super) struct Records {
    pub(super) by_object: HashMap<String, Vec<Value>>,
    /// Positions in `by_object` by id and by external-id value: a lookup costs the same with 10
    /// records or 10,000 (a scan of every record per lookup made long runs quadratic).
    pub(super) index: HashMap<String, ObjectIndex>,
    pub(super) counter: u64,
    pub(super) case_number: u64,
    /// While a Composite request runs: how to undo each of its writes, in order, so an
    /// `allOrNone` failure rolls back only what it wrote (cloning every record of the org per
    /// Composite request made the simulator quadratic in the number of records).
    pub(super) journal: Option<Vec<Undo>>,
    /// What records are stamped with (see [`crate::sim_clock`]).
    pub(super) clock: crate::sim_clock::SimClock,
}

/// One object's lookups.
#[derive(Default)]
pub(super) struct ObjectIndex {
    /// 15-character id -> position.
    pub(super) by_id15: HashMap<String, usize>,
    /// (field, value) of every string-valued field ending in `__c` -> positions, ascending.
    pub(super) by_ext: HashMap<(String, String), Vec<usize>>,
}

/// The string-valued custom fields of `rec` (what external-id lookups look at).
pub(super) fn ext_values(rec: &Value) -> impl Iterator<Item = (&String, &str)> {
    rec.as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.ends_with("__c"))
        .filter_map(|(k, v)| v.as_str().map(|s| (k, s)))
}

impl ObjectIndex {
    pub(super) fn add(&mut self, rec: &Value, pos: usize) {
        if let Some(id) = rec["Id"].as_str() {
            self.by_id15.insert(schema::id15(id).to_string(), pos);
        }
        for (field, value) in ext_values(rec) {
            let list = self.by_ext.entry((field.clone(), value.to_string())).or_default();
            let at = list.partition_point(|p| *p < pos);
            list.insert(at, pos);
        }
    }

    /// Forgets `rec`'s external-id values at `pos` (its id does not change on update).
    pub(super) fn remove_ext(&mut self, rec: &Value, pos: usize) {
        for (field, value) in ext_values(rec) {
            let key = (field.clone(), value.to_string());
            if let Some(list) = self.by_ext.get_mut(&key) {
                list.retain(|p| *p != pos);
                if list.is_empty() {
                    self.by_ext.remove(&key);
                }
            }
        }
    }

    pub(super) fn build(records: &[Value]) -> Self {
        let mut index = ObjectIndex::default();
        for (pos, rec) in records.iter().enumerate() {
            index.add(rec, pos);
        }
        index
    }
}

/// The inverse of one write to [`Records`].
pub(super) enum Undo {
    /// A record was pushed at the end of `object`'s list.
    Inserted { object: String },
    /// The record at `idx` was `old` before.
    Updated { object: String, idx: usize, old: Value },
    /// `rec` was removed from `idx`.
    Deleted { object: String, idx: usize, rec: Value },
}

impl Records {
    /// Position of `object`'s record with this 15- or 18-character id.
    pub(super) fn find(&self, object: &str, id: &str) -> Option<usize> {
        self.index.get(object)?.by_id15.get(schema::id15(id)).copied()
    }

    /// Positions of `object`'s records whose `field` is the string `value`, ascending.
    pub(super) fn matching(&self, object: &str, field: &str, value: &str) -> Vec<usize> {
        if field.ends_with("__c") {
            let key = (field.to_string(), value.to_string());
            return self.index.get(object).and_then(|i| i.by_ext.get(&key)).cloned().unwrap_or_default();
        }
        // Standard fields (custom objects without describe metadata, or `Id`): not indexed.
        let list = self.by_object.get(object).map(Vec::as_slice).unwrap_or_default();
        list.iter().enumerate().filter(|(_, r)| r[field] == value).map(|(i, _)| i).collect()
    }

    /// Adds `rec` at the end of `object`'s records.
    pub(super) fn push(&mut self, object: &str, rec: Value) {
        let list = self.by_object.entry(object.to_string()).or_default();
        let pos = list.len();
        self.index.entry(object.to_string()).or_default().add(&rec, pos);
        list.push(rec);
        self.note(|| Undo::Inserted { object: object.into() });
    }

    /// Changes the record at `idx` with `change`; returns it before and after.
    pub(super) fn update_at(&mut self, object: &str, idx: usize, change: impl FnOnce(&mut Value)) -> (Value, Value) {
        let list = self.by_object.get_mut(object).expect("a record found by the caller");
        let old = list[idx].clone();
        change(&mut list[idx]);
        let new = list[idx].clone();
        let index = self.index.entry(object.to_string()).or_default();
        index.remove_ext(&old, idx);
        index.add(&new, idx);
        self.note(|| Undo::Updated { object: object.into(), idx, old: old.clone() });
        (old, new)
    }

    /// Removes the record at `idx` (the positions after it move: the object is indexed again).
    pub(super) fn remove_at(&mut self, object: &str, idx: usize) {
        let list = self.by_object.get_mut(object).expect("a record found by the caller");
        let rec = list.remove(idx);
        self.index.insert(object.to_string(), ObjectIndex::build(list));
        self.note(|| Undo::Deleted { object: object.into(), idx, rec });
    }

    pub(super) fn note(&mut self, undo: impl FnOnce() -> Undo) {
        if let Some(journal) = &mut self.journal {
            journal.push(undo());
        }
    }

    /// Starts journaling writes; returns what `rollback` needs besides the journal.
    pub(super) fn begin(&mut self) -> (u64, u64) {
        self.journal = Some(Vec::new());
        (self.counter, self.case_number)
    }

    /// Stops journaling; with `rollback`, undoes every journaled write (newest first) and restores
    /// the id and case-number counters saved by `begin`, as if the writes never happened.
    pub(super) fn end(&mut self, saved: (u64, u64), rollback: bool) {
        let journal = self.journal.take().unwrap_or_default();
        if !rollback {
            return;
        }
        for undo in journal.into_iter().rev() {
            match undo {
                Undo::Inserted { object } => {
                    self.by_object.get_mut(&object).and_then(Vec::pop);
                }
                Undo::Updated { object, idx, old } => {
                    if let Some(slot) = self.by_object.get_mut(&object).and_then(|l| l.get_mut(idx)) {
                        *slot = old;
                    }
                }
                Undo::Deleted { object, idx, rec } => self.by_object.entry(object).or_default().insert(idx, rec),
            }
        }
        (self.counter, self.case_number) = saved;
        // Rare (a failed allOrNone request): index everything again rather than undo the index.
        self.index = self.by_object.iter().map(|(o, list)| (o.clone(), ObjectIndex::build(list))).collect();
    }
}

#[derive(Default)]
pub(super) struct World {
    pub(super) records: Records,
    pub(super) tokens: HashMap<String, Token>,
    pub(super) api_used: u64,
    pub(super) requests: Vec<LoggedRequest>,
    pub(super) changes: Vec<Change>,
    /// Records per query batch (Salesforce: 2000 by default); `None`: the default.
    pub(super) query_batch_size: Option<usize>,
    /// What is left of each query answered in batches, by locator (`nextRecordsUrl`).
    pub(super) query_locators: HashMap<String, Vec<Value>>,
}

pub(super) struct Shared {
    pub(super) config: Mutex<SfSimConfig>,
    pub(super) base_url: String,
    pub(super) faults: Faults,
    pub(super) world: Mutex<World>,
}

impl Shared {
    /// The configuration as it is now (tests change it while the simulator runs).
    pub(super) fn config(&self) -> SfSimConfig {
        self.config.lock().unwrap().clone()
    }
}

pub(super) fn user_id_for(username: &str) -> String {
    let n = username.bytes().fold(11u64, |a, b| a.wrapping_mul(131).wrapping_add(b as u64)) % 1_000_000;
    schema::make_id("005", n)
}

pub(super) fn issue(s: &Shared, username: &str, ttl: Duration) -> String {
    let cfg = s.config.lock().unwrap();
    let token = format!("{}!AQ{}", &cfg.org_id[..15.min(cfg.org_id.len())], uuid::Uuid::new_v4().simple());
    drop(cfg);
    s.world
        .lock()
        .unwrap()
        .tokens
        .insert(token.clone(), Token { username: username.into(), expires: Instant::now() + ttl });
    token
}
