//! The faults a robustness run strikes with, one at a time: strike, hold, undo.

use std::str::FromStr;
use std::time::Duration;

use crate::cluster::{Cluster, HarnessError};
use crate::proxy::LinkMode;

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// SIGKILL a random member; start it again after the hold.
    Kill,
    /// SIGKILL the leader; start it again after the hold.
    KillLeader,
    /// SIGSTOP a random member; SIGCONT after the hold.
    Pause,
    /// SIGSTOP the leader; SIGCONT after the hold.
    PauseLeader,
    /// Blackhole every peer link of a random member (both directions); heal after the hold.
    Isolate,
    /// Blackhole every peer link of the leader; heal after the hold.
    IsolateLeader,
    /// Close and refuse every peer connection of a random member; heal after the hold.
    DropLinks,
    /// Delay every peer link of a random member by 50-100 ms; heal after the hold.
    Delay,
    /// SIGKILL a random member and start it again at once.
    Restart,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 9] = [
        FaultKind::Kill,
        FaultKind::KillLeader,
        FaultKind::Pause,
        FaultKind::PauseLeader,
        FaultKind::Isolate,
        FaultKind::IsolateLeader,
        FaultKind::DropLinks,
        FaultKind::Delay,
        FaultKind::Restart,
    ];

    /// Whether the kind needs the fault network (peer links).
    pub fn needs_links(self) -> bool {
        matches!(
            self,
            FaultKind::Isolate | FaultKind::IsolateLeader | FaultKind::DropLinks | FaultKind::Delay
        )
    }

    /// Whether the kind aims at the leader.
    pub fn targets_leader(self) -> bool {
        matches!(
            self,
            FaultKind::KillLeader | FaultKind::PauseLeader | FaultKind::IsolateLeader
        )
    }

    /// The kind's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::KillLeader => "kill-leader",
            FaultKind::Pause => "pause",
            FaultKind::PauseLeader => "pause-leader",
            FaultKind::Isolate => "isolate",
            FaultKind::IsolateLeader => "isolate-leader",
            FaultKind::DropLinks => "drop-links",
            FaultKind::Delay => "delay",
            FaultKind::Restart => "restart",
        }
    }
}

/// A fault name that is not one of [`FaultKind::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("unknown fault {0:?} (known: kill, kill-leader, pause, pause-leader, isolate, isolate-leader, drop-links, delay, restart)")]
pub struct UnknownFault(String);

impl FromStr for FaultKind {
    type Err = UnknownFault;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownFault(s.to_string()))
    }
}

/// One fault that struck.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRecord {
    /// When it struck, since the run's start.
    pub at: Duration,
    /// What it was.
    pub kind: FaultKind,
    /// The member it hit.
    pub member: usize,
    /// How long it lasted.
    pub held: Duration,
}

/// Strikes `kind` at `member`.
pub(crate) fn strike(cluster: &mut Cluster, kind: FaultKind, member: usize, jitter: f64) {
    let net = cluster.net();
    match kind {
        FaultKind::Kill | FaultKind::KillLeader | FaultKind::Restart => cluster.kill(member),
        FaultKind::Pause | FaultKind::PauseLeader => cluster.pause(member),
        FaultKind::Isolate | FaultKind::IsolateLeader => {
            if let Some(net) = net {
                net.isolate(member, LinkMode::Blackhole);
            }
        }
        FaultKind::DropLinks => {
            if let Some(net) = net {
                net.isolate(member, LinkMode::Drop);
            }
        }
        FaultKind::Delay => {
            if let Some(net) = net {
                net.isolate(
                    member,
                    LinkMode::Delay {
                        fixed: Duration::from_millis(50 + (jitter * 50.0) as u64),
                        jitter: Duration::from_millis(20),
                    },
                );
            }
        }
    }
}

/// Undoes what [`strike`] did.
pub(crate) fn undo(
    cluster: &mut Cluster,
    kind: FaultKind,
    member: usize,
) -> Result<(), HarnessError> {
    match kind {
        FaultKind::Kill | FaultKind::KillLeader | FaultKind::Restart => {
            cluster.start_member(member)
        }
        FaultKind::Pause | FaultKind::PauseLeader => {
            cluster.resume(member);
            Ok(())
        }
        FaultKind::Isolate | FaultKind::IsolateLeader | FaultKind::DropLinks | FaultKind::Delay => {
            if let Some(net) = cluster.net() {
                net.heal();
            }
            Ok(())
        }
    }
}
