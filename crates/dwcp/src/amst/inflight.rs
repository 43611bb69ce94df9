//! The sender's record of frames written to a connection but not yet acknowledged, so that a
//! dropped connection's frames can be sent again on the others.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::wire::{Frame, FrameKind};

/// Identifies one connection of a session on the sender.
pub(crate) type ConnId = u64;

/// Most frames a session should have in flight: well under the receiver's bound on frames held
/// out of order ([`super::rx_session::MAX_PENDING_FRAMES`]).
const MAX_FRAMES_IN_FLIGHT: u64 = 1 << 14;
/// Least window a frame holds, however small its payload.
const MIN_FRAME_CHARGE: u64 = 4 << 10;

/// The window permits a frame holds while unacknowledged: its payload, but at least a floor
/// (4 KiB, more for windows over 64 MiB), so that the window also bounds the number of frames in
/// flight when a stream source sends many small ones.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Charge {
    min: u64,
}

impl Charge {
    /// The charge for a session with `window` bytes: never more than the window itself, so a
    /// frame can always be sent.
    pub(crate) fn for_window(window: u64) -> Self {
        let min = (window / MAX_FRAMES_IN_FLIGHT)
            .max(MIN_FRAME_CHARGE)
            .min(u64::from(crate::wire::MAX_PAYLOAD))
            .min(window);
        Self { min }
    }

    /// Permits a frame with `len` payload bytes holds.
    pub(crate) fn of(self, len: u64) -> u64 {
        len.max(self.min)
    }
}

/// A frame queued for a connection, with the stream bytes it carries: its payload length
/// for a `Raw` frame, the decoded length of its item for an `Hde` frame, 0 for control frames.
/// The window and acknowledgements count stream bytes.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) frame: Frame,
    pub(crate) stream_len: u64,
    /// The stream bytes of a frame that references content in the receiver's store, to send
    /// as literals if the receiver asks (`Need`); `None` for every other frame.
    pub(crate) original: Option<bytes::Bytes>,
    /// For a frame sent again: the connection that carries (or carried) it, which should
    /// leave this copy to another one.
    pub(crate) avoid: Option<ConnId>,
    /// For a frame sent again after the receiver reported holding it and then asked for its
    /// content (`Held`, then `Need`): the payload bytes already counted as acknowledged then.
    /// Its window permits were released then too, so no copy of it releases any.
    pub(crate) prepaid: Option<u32>,
}

impl Outgoing {
    /// A frame whose payload is stream bytes as they are (or a control frame).
    pub(crate) fn plain(frame: Frame) -> Self {
        let stream_len = if frame.header.kind == FrameKind::Data {
            u64::from(frame.header.length)
        } else {
            0
        };
        Self {
            frame,
            stream_len,
            original: None,
            avoid: None,
            prepaid: None,
        }
    }

    /// The window permits and acknowledged wire bytes this frame releases when it is
    /// acknowledged or reported held: none and its growth for a prepaid one.
    fn release(&self, charge: Charge) -> (u64, u64) {
        let wire = u64::from(self.frame.header.length);
        match self.prepaid {
            Some(counted) => (0, wire.saturating_sub(u64::from(counted))),
            None => (charge.of(self.stream_len), wire),
        }
    }
}

#[derive(Debug)]
struct Entry {
    out: Outgoing,
    conn: ConnId,
    /// When the frame was handed to the connection.
    at: std::time::Instant,
    /// Whether the receiver reported holding it ahead of the acknowledged bytes (`Held`): its
    /// permits and wire bytes were released then, and it is sent again only if the receiver
    /// asks for it (`Need`).
    held: bool,
}

#[derive(Debug, Default)]
struct State {
    /// Data frames by stream offset.
    data: BTreeMap<u64, Entry>,
    /// The `End` frame once written, and the connection that carries it.
    end: Option<Entry>,
    /// Contiguous bytes the receiver has acknowledged.
    acked: u64,
    /// Payload bytes of the data frames released by acknowledgements or `Held` reports.
    acked_wire: u64,
    /// Stream bytes, and frames, the receiver reported holding beyond `acked`.
    held: (u64, u64),
}

impl State {
    /// The data frames still waiting: neither acknowledged nor reported held, oldest first.
    fn waiting(&self) -> impl Iterator<Item = &Entry> {
        self.data.values().filter(|e| !e.held)
    }

    /// Whether the waiting data frames and the `End` add up to at most `budget` payload
    /// bytes (counting stops at the first byte over).
    fn outstanding_within(&self, budget: u64) -> bool {
        let mut total = self
            .end
            .as_ref()
            .map_or(0, |e| u64::from(e.out.frame.header.length));
        if total > budget {
            return false;
        }
        for e in self.waiting() {
            total = total.saturating_add(u64::from(e.out.frame.header.length));
            if total > budget {
                return false;
            }
        }
        true
    }

    /// Removes and returns the waiting data frames `pick` selects, oldest first.
    fn take_waiting(&mut self, pick: impl Fn(&Entry) -> bool) -> Vec<Entry> {
        let offsets: Vec<u64> = self
            .data
            .iter()
            .filter(|(_, e)| !e.held && pick(e))
            .map(|(off, _)| *off)
            .collect();
        offsets
            .into_iter()
            .filter_map(|off| self.data.remove(&off))
            .collect()
    }
}

/// What the record of frames on the wire holds ([`InFlight::outstanding`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outstanding {
    /// Data frames waiting for acknowledgement.
    pub(crate) waiting: usize,
    /// Data frames the receiver reported holding.
    pub(crate) held: u64,
    /// The oldest waiting frame's offset and connection.
    pub(crate) oldest: Option<(u64, ConnId)>,
    /// Whether the `End` frame is in the record.
    pub(crate) end: bool,
}

/// Frames on the wire, keyed by offset.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    state: Mutex<State>,
    charge: Charge,
}

impl InFlight {
    /// A record whose acknowledged offset starts at `start` (non-zero when resuming), whose
    /// frames hold `charge` of the window.
    pub(crate) fn new(start: u64, charge: Charge) -> Self {
        Self {
            state: Mutex::new(State {
                acked: start,
                ..State::default()
            }),
            charge,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another task panicked mid-update of plain bookkeeping;
        // the maps are still structurally valid, so carry on with them.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records that `frame` was written on `conn`. Returns false for a data frame that the
    /// receiver already acknowledged (nothing to track).
    pub(crate) fn written(&self, out: &Outgoing, conn: ConnId) -> bool {
        let mut st = self.lock();
        let frame = &out.frame;
        let entry = Entry {
            out: out.clone(),
            conn,
            at: std::time::Instant::now(),
            held: false,
        };
        if frame.header.kind == FrameKind::End {
            st.end = Some(entry);
            return true;
        }
        if frame.header.kind == FrameKind::Error {
            // An abort is written once and never answered.
            return true;
        }
        let end = frame.header.offset + out.stream_len;
        if end <= st.acked {
            return false;
        }
        st.data.insert(frame.header.offset, entry);
        true
    }

    /// Accounts for a data frame that was taken back to be sent again (see
    /// [`Self::take_conn`], [`Self::take_offset`]) and that [`Self::written`] then found
    /// acknowledged: the `Ack` that covered it found it no longer recorded, so its payload
    /// counts as acknowledged wire bytes now. Returns the window permits it held.
    pub(crate) fn acknowledged_before_resent(&self, out: &Outgoing) -> u64 {
        let (permits, wire) = out.release(self.charge);
        self.lock().acked_wire += wire;
        permits
    }

    /// Applies an acknowledgement of every byte below `offset`. Returns the window permits
    /// released (each frame's [`Charge`]), which is zero for a stale acknowledgement.
    pub(crate) fn ack(&self, offset: u64) -> u64 {
        let mut st = self.lock();
        if offset <= st.acked {
            return 0;
        }
        st.acked = offset;
        let mut released = 0;
        let mut wire = 0;
        while let Some(entry) = st.data.first_entry() {
            let len = entry.get().out.stream_len;
            if *entry.key() + len > offset {
                break;
            }
            let e = entry.remove();
            if e.held {
                // Released when it was reported held.
                st.held.0 = st.held.0.saturating_sub(len);
                st.held.1 = st.held.1.saturating_sub(1);
                continue;
            }
            let (permits, bytes) = e.out.release(self.charge);
            wire += bytes;
            released += permits;
        }
        st.acked_wire += wire;
        released
    }

    /// Applies a `Held` report: the receiver holds the data frame at `offset` ahead of the
    /// acknowledged bytes. Returns the window permits released (the frame's [`Charge`]): zero
    /// for a frame not in flight or already reported, and once [`MAX_FRAMES_IN_FLIGHT`] frames
    /// are held, so that the frames in flight stay bounded (the receiver holds out of order
    /// at most [`super::rx_session::MAX_PENDING_FRAMES`]).
    pub(crate) fn held(&self, offset: u64) -> u64 {
        let mut st = self.lock();
        if st.held.1 >= MAX_FRAMES_IN_FLIGHT {
            return 0;
        }
        let Some(e) = st.data.get_mut(&offset) else {
            return 0;
        };
        if e.held {
            return 0;
        }
        e.held = true;
        let len = e.out.stream_len;
        let (permits, wire) = e.out.release(self.charge);
        st.held.0 = st.held.0.saturating_add(len);
        st.held.1 += 1;
        st.acked_wire += wire;
        permits
    }

    /// The acknowledged offset and the stream bytes the receiver reported holding beyond it,
    /// read together (their sum never decreases).
    pub(crate) fn acked_and_held(&self) -> (u64, u64) {
        let st = self.lock();
        (st.acked, st.held.0)
    }

    /// The acknowledged offset.
    pub(crate) fn acked(&self) -> u64 {
        self.lock().acked
    }

    /// Payload bytes of the data frames the receiver acknowledged or reported holding (each
    /// frame once): the wire's share of [`Self::acked_and_held`].
    pub(crate) fn acked_wire(&self) -> u64 {
        self.lock().acked_wire
    }

    /// Removes and returns every frame that was written on `conn` and is neither acknowledged
    /// nor reported held, oldest first, so that they can be sent again.
    pub(crate) fn take_conn(&self, conn: ConnId) -> Vec<Outgoing> {
        let mut st = self.lock();
        let mut out: Vec<Outgoing> = st
            .take_waiting(|e| e.conn == conn)
            .into_iter()
            .map(|e| e.out)
            .collect();
        if st.end.as_ref().is_some_and(|e| e.conn == conn) {
            if let Some(e) = st.end.take() {
                out.push(e.out);
            }
        }
        out
    }

    /// Whether the `End` frame was written (and not yet taken back).
    pub(crate) fn end_written(&self) -> bool {
        self.lock().end.is_some()
    }

    /// The stream's tail, to be sent again on other connections: once the `End` frame was
    /// written, if the payload of every frame neither acknowledged nor reported held (the
    /// `End` included) adds up to at most `budget` bytes, removes and returns them all, oldest
    /// first, each with the connection that carries it. `None` (and nothing removed) before
    /// that.
    pub(crate) fn take_tail(&self, budget: u64) -> Option<Vec<(ConnId, Outgoing)>> {
        let mut st = self.lock();
        if st.end.is_none() || !st.outstanding_within(budget) {
            return None;
        }
        let mut out: Vec<(ConnId, Outgoing)> = st
            .take_waiting(|_| true)
            .into_iter()
            .map(|e| (e.conn, e.out))
            .collect();
        if let Some(e) = st.end.take() {
            out.push((e.conn, e.out));
        }
        Some(out)
    }

    /// A lone frame, to be sent again on another connection at once: removes and returns the
    /// data frame at `offset` if it is neither acknowledged nor reported held, and it and every
    /// other such frame (the `End` included) add up to at most `budget` payload bytes. `None`
    /// (and nothing removed) otherwise.
    pub(crate) fn take_lone(&self, offset: u64, budget: u64) -> Option<Outgoing> {
        let mut st = self.lock();
        if st.data.get(&offset).is_none_or(|e| e.held) || !st.outstanding_within(budget) {
            return None;
        }
        st.data.remove(&offset).map(|e| e.out)
    }

    /// Removes and returns the unacknowledged data frame at `offset`, which the receiver asked
    /// for (`Need`), to be sent again; `None` for one acknowledged or already taken back. A
    /// frame the receiver reported holding is taken too (it could not decode it once the bytes
    /// before it were in), and comes back prepaid: its permits were released when it was held.
    pub(crate) fn take_offset(&self, offset: u64) -> Option<Outgoing> {
        let mut st = self.lock();
        let e = st.data.remove(&offset)?;
        let mut out = e.out;
        if e.held {
            st.held.0 = st.held.0.saturating_sub(out.stream_len);
            st.held.1 = st.held.1.saturating_sub(1);
            // Its whole payload counts as acknowledged by now (a prepaid copy's growth was
            // added when it was held).
            out.prepaid = Some(out.frame.header.length);
        }
        Some(out)
    }

    /// The connection holding the oldest unacknowledged frame: the stream cannot advance
    /// past that frame, so when the connection stalls its frames are worth sending again on
    /// another one (with [`Self::take_conn`], which keeps the window accounting exact).
    pub(crate) fn oldest_conn(&self) -> Option<ConnId> {
        self.lock().waiting().next().map(|e| e.conn)
    }

    /// When the longest-waiting unacknowledged frame on `conn` was handed to it, if any.
    pub(crate) fn oldest_on(&self, conn: ConnId) -> Option<std::time::Instant> {
        let st = self.lock();
        st.waiting()
            .chain(st.end.iter())
            .filter(|e| e.conn == conn)
            .map(|e| e.at)
            .min()
    }

    /// What the record holds, for a report: data frames waiting for acknowledgement, those
    /// reported held, and the oldest waiting frame's offset and connection.
    pub(crate) fn outstanding(&self) -> Outstanding {
        let st = self.lock();
        Outstanding {
            waiting: st.waiting().count(),
            held: st.held.1,
            oldest: st
                .waiting()
                .next()
                .map(|e| (e.out.frame.header.offset, e.conn)),
            end: st.end.is_some(),
        }
    }

    /// Frames on `conn` still waiting for acknowledgement and not reported held.
    pub(crate) fn pending_on(&self, conn: ConnId) -> usize {
        let st = self.lock();
        st.waiting().filter(|e| e.conn == conn).count()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::wire::{PayloadKind, SessionId};

    /// The offsets of `frames`, in order.
    fn offsets(frames: &[Outgoing]) -> Vec<u64> {
        frames.iter().map(|o| o.frame.header.offset).collect()
    }

    fn data(offset: u64, len: usize) -> Outgoing {
        Outgoing::plain(data_frame(offset, len))
    }

    fn data_frame(offset: u64, len: usize) -> Frame {
        Frame::new(
            FrameKind::Data,
            PayloadKind::Raw,
            SessionId::default(),
            offset / 10,
            offset,
            Bytes::from(vec![0u8; len]),
        )
        .unwrap()
    }

    #[test]
    fn ack_releases_only_fully_covered_frames() {
        let f = InFlight::new(0, Charge::default());
        for off in [0, 10, 20] {
            assert!(f.written(&data(off, 10), 1));
        }
        assert_eq!(f.ack(15), 10, "frame at 10 is only half covered");
        assert_eq!(f.ack(30), 20);
        assert_eq!(f.ack(30), 0, "a repeated ack releases nothing");
        assert_eq!(f.pending_on(1), 0);
    }

    #[test]
    fn the_report_counts_waiting_and_held_frames_and_names_the_oldest() {
        let f = InFlight::new(0, Charge::default());
        assert_eq!(
            f.outstanding(),
            Outstanding {
                waiting: 0,
                held: 0,
                oldest: None,
                end: false
            }
        );
        assert!(f.written(&data(0, 10), 3));
        assert!(f.written(&data(10, 10), 4));
        assert!(f.written(&data(20, 10), 5));
        f.held(10);
        let end = Frame::control(FrameKind::End, SessionId::default(), 30, Bytes::new()).unwrap();
        assert!(f.written(&Outgoing::plain(end), 5));
        assert_eq!(
            f.outstanding(),
            Outstanding {
                waiting: 2,
                held: 1,
                oldest: Some((0, 3)),
                end: true
            }
        );
        f.ack(10);
        assert_eq!(f.outstanding().oldest, Some((20, 5)), "past the held frame");
    }

    #[test]
    fn small_frames_release_at_least_the_minimum_charge() {
        let charge = Charge::for_window(64 << 20);
        assert_eq!(charge.of(10), 4096);
        assert_eq!(charge.of(512 << 10), 512 << 10);
        // A small window is never exceeded by one frame's charge.
        assert_eq!(Charge::for_window(1000).of(1), 1000);
        // The window bounds the frames in flight.
        assert_eq!(
            Charge::for_window(1 << 30).of(1),
            (1 << 30) / MAX_FRAMES_IN_FLIGHT
        );
        let f = InFlight::new(0, charge);
        for off in [0, 10, 20] {
            assert!(f.written(&data(off, 10), 1));
        }
        assert_eq!(f.ack(30), 3 * 4096);
    }

    #[test]
    fn a_held_frame_is_released_once_and_never_sent_again() {
        let f = InFlight::new(0, Charge::default());
        for off in [0, 10, 20] {
            assert!(f.written(&data(off, 10), 1));
        }
        assert_eq!(f.held(10), 10);
        assert_eq!(f.held(10), 0, "a repeated report releases nothing");
        assert_eq!(f.held(30), 0, "nothing in flight there");
        assert_eq!(f.acked_and_held(), (0, 10));
        assert_eq!(f.acked_wire(), 10);
        assert_eq!(f.pending_on(1), 2);
        // A dropped connection leaves the held frame where it is.
        assert_eq!(offsets(&f.take_conn(1)), vec![0, 20]);
        // The acknowledgement covering it releases only the others.
        for o in [data(0, 10), data(20, 10)] {
            assert!(f.written(&o, 2));
        }
        assert_eq!(f.ack(30), 20);
        assert_eq!(f.acked_and_held(), (30, 0));
        assert_eq!(f.acked_wire(), 30);
    }

    #[test]
    fn a_held_frame_the_receiver_asks_for_goes_again_without_its_permits() {
        let f = InFlight::new(0, Charge::default());
        for off in [0, 10] {
            assert!(f.written(&data(off, 10), 1));
        }
        assert_eq!(f.held(10), 10);
        // Decoding it once the bytes before it were in, the receiver found content missing.
        let again = f.take_offset(10).unwrap();
        assert_eq!(again.prepaid, Some(10));
        assert_eq!(f.acked_and_held(), (0, 0), "no longer held");
        assert!(f.take_offset(10).is_none(), "taken once");
        // Sent again with the missing content as literals: 25 payload bytes, not 10.
        let literals = Outgoing {
            frame: data_frame(10, 25),
            stream_len: 10,
            ..again
        };
        assert!(f.written(&literals, 2));
        // Held once more, then acknowledged: no permits, the wire only for its growth.
        assert_eq!(f.held(10), 0);
        assert_eq!(f.acked_wire(), 25);
        assert_eq!(f.ack(20), 10, "only the frame at 0 held permits");
        assert_eq!(f.acked_wire(), 35);
        assert_eq!(f.acked_and_held(), (20, 0));
        // A prepaid copy found acknowledged before it went releases nothing either.
        assert_eq!(f.acknowledged_before_resent(&literals), 0);
    }

    #[test]
    fn a_prepaid_copy_held_and_asked_for_again_counts_its_wire_bytes_once() {
        let f = InFlight::new(0, Charge::default());
        assert!(f.written(&data(0, 10), 1));
        assert!(f.written(&data(10, 10), 1));
        assert_eq!(f.held(10), 10);
        let again = f.take_offset(10).unwrap();
        let second = Outgoing {
            frame: data_frame(10, 25),
            ..again
        };
        assert!(f.written(&second, 1));
        assert_eq!(f.held(10), 0);
        assert_eq!(f.acked_wire(), 25);
        // Asked for once more: the third copy, 40 bytes, adds only its growth over the second.
        let again = f.take_offset(10).unwrap();
        assert_eq!(again.prepaid, Some(25));
        let third = Outgoing {
            frame: data_frame(10, 40),
            ..again
        };
        assert!(f.written(&third, 2));
        assert_eq!(f.ack(20), 10);
        assert_eq!(
            f.acked_wire(),
            50,
            "10 + 40: every byte of the last copy, once"
        );
    }

    #[test]
    fn the_tail_and_the_oldest_frame_leave_held_frames_out() {
        let f = InFlight::new(0, Charge::default());
        f.written(&data(0, 100), 1);
        f.written(&data(100, 50), 2);
        f.written(&end(), 3);
        f.held(0);
        assert_eq!(f.oldest_conn(), Some(2));
        assert!(f.oldest_on(1).is_none());
        // 50 + 32 bytes left to cross.
        let tail: Vec<u64> = f
            .take_tail(82)
            .unwrap()
            .into_iter()
            .map(|(_, o)| o.frame.header.offset)
            .collect();
        assert_eq!(tail, vec![100, 0]);
    }

    #[test]
    fn held_frames_are_bounded_in_number() {
        let f = InFlight::new(0, Charge::default());
        for i in 0..=MAX_FRAMES_IN_FLIGHT {
            f.written(&data(i + 1, 1), 1);
        }
        for i in 0..MAX_FRAMES_IN_FLIGHT {
            assert_eq!(f.held(i + 1), 1);
        }
        assert_eq!(f.held(MAX_FRAMES_IN_FLIGHT + 1), 0);
    }

    #[test]
    fn dropped_connection_returns_its_frames_in_order() {
        let f = InFlight::new(0, Charge::default());
        f.written(&data(0, 10), 1);
        f.written(&data(10, 10), 2);
        f.written(&data(20, 10), 1);
        assert_eq!(offsets(&f.take_conn(1)), vec![0, 20]);
        assert_eq!(f.pending_on(2), 1);
        assert!(f.take_conn(1).is_empty());
    }

    #[test]
    fn oldest_conn_is_the_one_holding_the_stream_back() {
        let f = InFlight::new(0, Charge::default());
        assert_eq!(f.oldest_conn(), None);
        f.written(&data(0, 10), 7);
        f.written(&data(10, 10), 8);
        assert_eq!(f.oldest_conn(), Some(7));
        f.ack(10);
        assert_eq!(f.oldest_conn(), Some(8));
    }

    #[test]
    fn a_frame_taken_back_and_then_acknowledged_is_released_once() {
        let f = InFlight::new(0, Charge::default());
        f.written(&data(0, 10), 7);
        let again = f.take_conn(7);
        assert_eq!(again.len(), 1);
        // The first copy arrives after all: the ack releases nothing, because the copy in
        // the queue is no longer recorded; the writer that finds it acknowledged releases it.
        assert_eq!(f.ack(10), 0);
        assert_eq!(f.acked_wire(), 0);
        assert!(!f.written(&again[0], 8));
        // That writer releases its permits and counts its payload as acknowledged, once.
        assert_eq!(f.acknowledged_before_resent(&again[0]), 10);
        assert_eq!(f.acked_wire(), u64::from(again[0].frame.header.length));
    }

    #[test]
    fn frames_below_a_resumed_start_are_not_tracked() {
        let f = InFlight::new(100, Charge::default());
        assert!(!f.written(&data(50, 10), 1));
        assert!(f.written(&data(100, 10), 1));
        assert_eq!(f.acked(), 100);
    }

    fn end() -> Outgoing {
        let end = Frame::control(
            FrameKind::End,
            SessionId::default(),
            0,
            Bytes::from(vec![0u8; 32]),
        );
        Outgoing::plain(end.unwrap())
    }

    #[test]
    fn the_tail_is_taken_whole_once_the_end_is_written_and_it_fits_the_budget() {
        let f = InFlight::new(0, Charge::default());
        f.written(&data(0, 100), 1);
        f.written(&data(100, 50), 2);
        // The End is not written yet: more may come.
        assert!(f.take_tail(1 << 20).is_none());
        f.written(&end(), 3);
        // 182 bytes of payload in flight.
        assert!(f.take_tail(181).is_none());
        assert_eq!(f.pending_on(1), 1, "nothing taken when it does not fit");
        let tail: Vec<(ConnId, u64, FrameKind)> = f
            .take_tail(182)
            .unwrap()
            .into_iter()
            .map(|(conn, o)| (conn, o.frame.header.offset, o.frame.header.kind))
            .collect();
        assert_eq!(
            tail,
            vec![
                (1, 0, FrameKind::Data),
                (2, 100, FrameKind::Data),
                (3, 0, FrameKind::End)
            ]
        );
        // Taken: the originals' acknowledgement releases nothing more, and a second call finds
        // no End to copy.
        assert_eq!(f.pending_on(1) + f.pending_on(2), 0);
        assert_eq!(f.ack(150), 0);
        assert!(f.take_tail(1 << 20).is_none());
    }

    #[test]
    fn a_frame_is_taken_alone_only_while_little_else_is_outstanding() {
        let f = InFlight::new(0, Charge::default());
        f.written(&data(0, 100), 1);
        f.written(&data(100, 50), 2);
        assert!(f.take_lone(0, 149).is_none(), "150 bytes are out");
        assert_eq!(f.pending_on(1), 1, "nothing taken when it does not fit");
        assert!(f.take_lone(7, 1 << 20).is_none(), "no frame there");
        let lone = f.take_lone(100, 150).unwrap();
        assert_eq!(lone.frame.header.offset, 100);
        assert_eq!(f.pending_on(2), 0);
        // Taken: its copy, written on another connection, is recorded there; once the
        // original's acknowledgement came first, the copy's permits are released once.
        assert_eq!(f.ack(100), 100);
        assert_eq!(f.ack(150), 0, "the taken frame is not in the record");
        assert!(!f.written(&lone, 3));
        assert_eq!(f.acknowledged_before_resent(&lone), 50);
        // A frame reported held is never sent again.
        f.written(&data(150, 10), 1);
        f.held(150);
        assert!(f.take_lone(150, 1 << 20).is_none());
    }

    #[test]
    fn end_frame_follows_its_connection() {
        let f = InFlight::new(0, Charge::default());
        let end = Frame::control(FrameKind::End, SessionId::default(), 0, Bytes::new()).unwrap();
        f.written(&Outgoing::plain(end), 3);
        assert!(f.take_conn(2).is_empty());
        let again = f.take_conn(3);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].frame.header.kind, FrameKind::End);
    }

    #[test]
    fn an_encoded_frame_counts_its_stream_bytes_not_its_payload() {
        let f = InFlight::new(0, Charge::default());
        // A 5-byte Zero item standing for 1000 stream bytes.
        let mut zero = data(0, 5);
        zero.stream_len = 1000;
        assert!(f.written(&zero, 1));
        assert_eq!(f.ack(5), 0, "5 stream bytes do not cover it");
        assert_eq!(f.ack(1000), 1000);
        assert!(!f.written(&zero, 2), "acknowledged already");
    }

    #[test]
    fn acknowledged_frames_count_their_payload_once_as_wire_bytes() {
        let f = InFlight::new(0, Charge::default());
        // A 5-byte item standing for 1000 stream bytes, then 300 raw bytes.
        let mut zero = data(0, 5);
        zero.stream_len = 1000;
        let raw = data(1000, 300);
        assert!(f.written(&zero, 1));
        assert!(f.written(&raw, 1));
        f.ack(1000);
        assert_eq!(f.acked_wire(), 5);
        // Taken back from a dropped connection, written again, acknowledged: counted once.
        assert_eq!(f.take_conn(1).len(), 1);
        assert!(f.written(&raw, 2));
        f.ack(1300);
        f.ack(1300);
        assert_eq!(f.acked_wire(), 305);
    }
}
