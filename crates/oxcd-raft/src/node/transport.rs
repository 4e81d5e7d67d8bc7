//! Hook for sending raft messages to peers.
//!
//! A single member never produces messages for others; the multi-member
//! work plugs real peer networking in here. Incoming messages go to
//! [`crate::RaftHandle::step`].

use raft::eraftpb::Message;

/// Sends raft messages to peers. Called from the node thread, so it must
/// not block (queue, or write to a non-blocking socket).
pub trait Transport: Send + 'static {
    /// Sends `msgs` (never empty). Delivery is best-effort: raft retries.
    fn send(&mut self, msgs: Vec<Message>);
}

/// Drops every message: enough for a single-member cluster.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopTransport;

impl Transport for NoopTransport {
    fn send(&mut self, msgs: Vec<Message>) {
        if !msgs.is_empty() {
            tracing::trace!(count = msgs.len(), "NoopTransport dropping raft messages");
        }
    }
}
