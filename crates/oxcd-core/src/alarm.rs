//! Active alarms (etcd's `alarmStore`): NOSPACE and CORRUPT, per member, replicated through
//! raft and kept in the backend's auxiliary table [`ALARM_TABLE`], so every member applies
//! the same gates in the same log position.

use std::collections::BTreeSet;

use oxcd_mvcc::{MvccError, Store};
use oxcd_proto::etcdserverpb::{
    alarm_request::AlarmAction, AlarmMember, AlarmRequest, AlarmResponse, AlarmType,
};
use parking_lot::RwLock;

/// The backend's auxiliary table of active alarms (key: member id and alarm type, 12
/// big-endian bytes; empty value).
pub(crate) const ALARM_TABLE: &str = "alarm";

/// The active alarms of every member.
#[derive(Debug, Default)]
pub struct AlarmSet {
    active: RwLock<BTreeSet<(u64, i32)>>,
}

fn alarm_key(member: u64, alarm: i32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&member.to_be_bytes());
    k[8..].copy_from_slice(&alarm.to_be_bytes());
    k
}

impl AlarmSet {
    /// The alarms stored in the backend.
    pub fn load(store: &Store) -> Result<AlarmSet, MvccError> {
        let mut active = BTreeSet::new();
        for (key, _) in store.aux_scan(ALARM_TABLE)? {
            let key: [u8; 12] = key.as_slice().try_into().map_err(|_| MvccError::Corrupt {
                what: format!("alarm key of {} bytes", key.len()),
            })?;
            let member = u64::from_be_bytes(key[..8].try_into().unwrap_or_default());
            let alarm = i32::from_be_bytes(key[8..].try_into().unwrap_or_default());
            active.insert((member, alarm));
        }
        Ok(AlarmSet {
            active: RwLock::new(active),
        })
    }

    /// Replaces the alarms with those `store` holds (its backend was replaced).
    pub fn reload(&self, store: &Store) -> Result<(), MvccError> {
        let fresh = AlarmSet::load(store)?;
        *self.active.write() = fresh.active.into_inner();
        Ok(())
    }

    /// Whether any member has `alarm` active.
    pub fn is_active(&self, alarm: AlarmType) -> bool {
        self.active.read().iter().any(|(_, a)| *a == alarm as i32)
    }

    /// Active alarms of type `alarm` (every alarm for [`AlarmType::None`]).
    pub fn list(&self, alarm: AlarmType) -> Vec<AlarmMember> {
        self.active
            .read()
            .iter()
            .filter(|(_, a)| alarm == AlarmType::None || *a == alarm as i32)
            .map(|(m, a)| AlarmMember {
                member_id: *m,
                alarm: *a,
            })
            .collect()
    }

    /// Applies a replicated Alarm request (etcd's `applierV3backend.Alarm`): GET lists,
    /// ACTIVATE and DEACTIVATE answer with the alarm they changed, or nothing if it was
    /// already in that state.
    pub(crate) fn apply(
        &self,
        store: &Store,
        r: &AlarmRequest,
    ) -> Result<AlarmResponse, MvccError> {
        let alarm = AlarmType::try_from(r.alarm).unwrap_or(AlarmType::None);
        let entry = (r.member_id, r.alarm);
        let changed = |list: &mut Vec<AlarmMember>| {
            list.push(AlarmMember {
                member_id: r.member_id,
                alarm: r.alarm,
            })
        };
        let mut alarms = Vec::new();
        match AlarmAction::try_from(r.action).unwrap_or(AlarmAction::Get) {
            AlarmAction::Get => alarms = self.list(alarm),
            AlarmAction::Activate => {
                if alarm != AlarmType::None && self.active.write().insert(entry) {
                    store.aux_put(ALARM_TABLE, &alarm_key(r.member_id, r.alarm), b"")?;
                    tracing::warn!(member = %format!("{:x}", r.member_id), alarm = ?alarm, "alarm raised");
                    changed(&mut alarms);
                }
            }
            AlarmAction::Deactivate => {
                if self.active.write().remove(&entry) {
                    store.aux_delete(ALARM_TABLE, &alarm_key(r.member_id, r.alarm))?;
                    tracing::info!(member = %format!("{:x}", r.member_id), alarm = ?alarm, "alarm cleared");
                    changed(&mut alarms);
                }
            }
        }
        Ok(AlarmResponse {
            header: None,
            alarms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(action: AlarmAction, member_id: u64, alarm: AlarmType) -> AlarmRequest {
        AlarmRequest {
            action: action as i32,
            member_id,
            alarm: alarm as i32,
        }
    }

    #[test]
    fn activate_deactivate_and_persist() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("db");
        let store = Store::open(&path).unwrap();
        let set = AlarmSet::load(&store).unwrap();
        let on = set
            .apply(&store, &req(AlarmAction::Activate, 7, AlarmType::Nospace))
            .unwrap();
        assert_eq!(on.alarms.len(), 1);
        let again = set
            .apply(&store, &req(AlarmAction::Activate, 7, AlarmType::Nospace))
            .unwrap();
        assert!(again.alarms.is_empty(), "already active: nothing changed");
        assert!(set.is_active(AlarmType::Nospace));
        assert!(!set.is_active(AlarmType::Corrupt));
        store.commit(true).unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        let set = AlarmSet::load(&store).unwrap();
        assert_eq!(set.list(AlarmType::None).len(), 1);
        let off = set
            .apply(&store, &req(AlarmAction::Deactivate, 7, AlarmType::Nospace))
            .unwrap();
        assert_eq!(off.alarms[0].member_id, 7);
        assert!(set.list(AlarmType::None).is_empty());
    }
}
