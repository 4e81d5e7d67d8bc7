//! [`Outbox`]: the frames waiting for one peer's raft stream, shared by the raft thread
//! (which fills it) and the peer's task (which owns the stream).
//!
//! **Why the raft thread writes to the socket itself.** A queue between the raft thread
//! and the peer task costs a wake-up of the task per batch, and on 2 cores the runtime
//! worker it runs on is usually parked: that switch was the largest item of a follower's
//! runtime CPU (its only traffic is appends in and acknowledgements out). So on a plain
//! TCP stream, the raft thread frames its messages and writes them with one non-blocking
//! `write` on a duplicate of the socket, and the task is woken only for what the socket
//! did not take (its buffer was full), for pings, and for TLS streams, which only the
//! task can write. Frames are never reordered: while the task has bytes in flight, the
//! raft thread only appends behind them.

use std::io::Write as _;
use std::net::TcpStream;

use oxcd_raft::eraftpb::Message;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::frame;

/// Where the peer's link stands, as far as sending goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    /// A stream is being opened: frames wait for it (bounded).
    Connecting,
    /// A stream is open.
    Open,
    /// The last attempt failed and the task waits before the next: frames are dropped
    /// (raft retries), as a stale backlog would only delay what raft sends next.
    Down,
}

/// What the raft thread and the task share.
struct State {
    link: LinkState,
    /// Framed messages not yet written, in order.
    pending: Vec<u8>,
    /// Messages in `pending` (they count against the capacity).
    pending_messages: usize,
    /// Messages and their bytes framed while connecting: counted as sent once the stream
    /// opens, as dropped if it does not.
    connecting: (u64, u64),
    /// The task has taken bytes to write and has not finished: anything new goes behind
    /// them, through the task.
    task_writing: bool,
    /// The open stream's socket, for writes from the raft thread (plain TCP only).
    direct: Option<TcpStream>,
}

/// Counts of an [`Outbox::push`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pushed {
    /// Messages framed for the open stream (not those waiting for one to open).
    pub accepted: u64,
    /// Their framed bytes.
    pub bytes: u64,
    /// Messages dropped (link down, or the capacity reached).
    pub dropped: u64,
}

/// The frames waiting for one peer (see the module docs).
pub(super) struct Outbox {
    state: Mutex<State>,
    /// Wakes the task: bytes wait that only it can write.
    wake: Notify,
    /// Most messages waiting at once.
    capacity: usize,
}

impl Outbox {
    /// An outbox for a link being opened, holding at most `capacity` messages.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                link: LinkState::Connecting,
                pending: Vec::new(),
                pending_messages: 0,
                connecting: (0, 0),
                task_writing: false,
                direct: None,
            }),
            wake: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    /// Frames `msgs` for the stream and writes them at once where the raft thread may
    /// (never blocks: what the socket does not take is left to the task).
    pub(super) fn push(&self, msgs: impl IntoIterator<Item = Message>) -> Pushed {
        let mut counts = Pushed::default();
        let mut s = self.state.lock();
        for m in msgs {
            if s.link == LinkState::Down || s.pending_messages >= self.capacity {
                counts.dropped += 1;
                continue;
            }
            let bytes = frame::put_message(&mut s.pending, &m) as u64;
            s.pending_messages += 1;
            if s.link == LinkState::Open {
                counts.accepted += 1;
                counts.bytes += bytes;
            } else {
                s.connecting.0 += 1;
                s.connecting.1 += bytes;
            }
        }
        if counts.accepted == 0 || s.task_writing {
            return counts;
        }
        let s = &mut *s;
        let written = match &s.direct {
            Some(socket) => write_some(socket, &s.pending),
            None => 0,
        };
        s.pending.drain(..written);
        if s.pending.is_empty() {
            s.pending_messages = 0;
        } else {
            // The socket's buffer is full, or the stream is TLS, or it broke: the task
            // writes the rest (and meets the error, if any).
            s.task_writing = true;
            self.wake.notify_one();
        }
        counts
    }

    /// Appends a control frame (a ping) for the task to write.
    pub(super) fn push_control(&self, kind: frame::FrameKind) {
        let mut s = self.state.lock();
        frame::put_control(&mut s.pending, kind);
        s.task_writing = true;
    }

    /// Waits until bytes wait for the task.
    pub(super) async fn wanted(&self) {
        self.wake.notified().await
    }

    /// Takes the bytes waiting, for the task to write (empty: nothing left, and the raft
    /// thread may write again). `buf` is reused.
    pub(super) fn take(&self, buf: &mut Vec<u8>) {
        buf.clear();
        let mut s = self.state.lock();
        std::mem::swap(buf, &mut s.pending);
        s.pending_messages = 0;
        s.task_writing = !buf.is_empty();
    }

    /// A stream is open; `direct` is its socket if the raft thread may write to it.
    /// Returns the messages and bytes that waited for it, now handed to it.
    pub(super) fn open(&self, direct: Option<TcpStream>) -> (u64, u64) {
        let mut s = self.state.lock();
        s.link = LinkState::Open;
        s.direct = direct;
        // What waited for the stream goes first, by the task.
        s.task_writing = !s.pending.is_empty();
        if s.task_writing {
            self.wake.notify_one();
        }
        std::mem::take(&mut s.connecting)
    }

    /// A stream is being opened again (after a backoff, or to new URLs).
    pub(super) fn connecting(&self) {
        let mut s = self.state.lock();
        s.link = LinkState::Connecting;
        s.direct = None;
    }

    /// The stream ended or could not be opened: what waits is dropped, and so is what
    /// comes until [`Outbox::connecting`]. Returns the messages dropped that had waited
    /// for a stream to open (the others were handed to the stream that broke).
    pub(super) fn down(&self) -> u64 {
        let mut s = self.state.lock();
        s.link = LinkState::Down;
        s.direct = None;
        s.task_writing = false;
        s.pending.clear();
        s.pending_messages = 0;
        std::mem::take(&mut s.connecting).0
    }
}

/// Writes as much of `buf` as `socket` takes without blocking.
fn write_some(mut socket: &TcpStream, buf: &[u8]) -> usize {
    let mut written = 0;
    while written < buf.len() {
        match socket.write(&buf[written..]) {
            Ok(0) => break,
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // WouldBlock, or a broken stream the task will find out about.
            Err(_) => break,
        }
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcd_raft::eraftpb::MessageType;

    fn heartbeat() -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgHeartbeat);
        m.from = 1;
        m.to = 2;
        m
    }

    #[test]
    fn frames_wait_while_connecting_and_are_dropped_while_down() {
        let outbox = Outbox::new(3);
        let pushed = outbox.push((0..5).map(|_| heartbeat()));
        assert_eq!((pushed.accepted, pushed.dropped), (0, 2));
        assert_eq!(outbox.down(), 3);
        assert_eq!(outbox.push([heartbeat()]).dropped, 1);
        outbox.connecting();
        assert_eq!(outbox.push([heartbeat()]).accepted, 0);
        // Opened without a socket the raft thread may use (TLS): the task writes all.
        let (waited, bytes) = outbox.open(None);
        assert_eq!(waited, 1);
        assert!(bytes > frame::HEADER_LEN as u64);
        assert_eq!(outbox.push([heartbeat()]).accepted, 1);
        let mut buf = Vec::new();
        outbox.take(&mut buf);
        let mut bytes = bytes::BytesMut::from(&buf[..]);
        let mut n = 0;
        while let Some((kind, _)) = frame::take_frame(&mut bytes).unwrap() {
            assert_eq!(kind, frame::FrameKind::Message);
            n += 1;
        }
        assert_eq!(n, 2);
        outbox.take(&mut buf);
        assert!(buf.is_empty());
    }

    #[test]
    fn the_raft_thread_writes_an_open_plain_stream_itself_and_keeps_the_order() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.set_nonblocking(true).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let outbox = Outbox::new(1 << 20);
        outbox.open(Some(client));
        // Written at once: nothing is left for the task.
        outbox.push([heartbeat()]);
        let mut buf = Vec::new();
        outbox.take(&mut buf);
        assert!(buf.is_empty());
        // A ping is the task's: what follows it waits behind it, in order.
        outbox.push_control(frame::FrameKind::Ping);
        outbox.push([heartbeat()]);
        outbox.take(&mut buf);
        let mut pending = bytes::BytesMut::from(&buf[..]);
        let kinds: Vec<_> = std::iter::from_fn(|| frame::take_frame(&mut pending).unwrap())
            .map(|(k, _)| k)
            .collect();
        assert_eq!(kinds, [frame::FrameKind::Ping, frame::FrameKind::Message]);
        // The first heartbeat reached the other end.
        let mut got = vec![0u8; frame::HEADER_LEN];
        std::io::Read::read_exact(&mut server, &mut got).unwrap();
        assert_eq!(got[0], frame::FrameKind::Message as u8);
    }
}
