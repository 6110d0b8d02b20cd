//! Audit events as JSON lines, written by a thread of their own off the request path.

use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::{AuditEvent, AuditRecord, AuditSink};

/// What to do when `capacity` events are already waiting to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Overflow {
    /// The response waits until the writer has room: no event is ever lost, and a slow disk
    /// slows the service down.
    Wait,
    /// The event is dropped and counted ([`JsonLinesSink::dropped`]): the service never
    /// waits, and the count says how much the trail is missing.
    DropAndCount,
}

/// Writes each event as one line of JSON to a writer (a file, stdout) from a thread of its
/// own, so requests never wait on I/O unless you choose [`Overflow::Wait`] and `capacity`
/// events are waiting to be written.
///
/// The line is formatted where the request ends, then appended to one shared buffer (a short
/// copy under a lock, so lines keep the order in which requests ended), and the writer thread
/// writes the buffer out every few milliseconds while events keep coming: no allocation, queue
/// slot or wake-up per event.
///
/// Call [`flush`](Self::flush) after the server's graceful shutdown: every event recorded before
/// it is then written and flushed.
///
/// Cheap to clone; clones share the buffers and the writer.
#[derive(Clone)]
pub struct JsonLinesSink {
    handle: Arc<Handle>,
}

/// The writer stops once the last [`JsonLinesSink`] clone is gone (and all is written).
struct Handle(Arc<Shared>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.wake_writer();
    }
}

struct Shared {
    buffer: Mutex<Buffer>,
    /// Events formatted or being formatted, not yet taken by the writer.
    pending: AtomicUsize,
    capacity: usize,
    overflow: Overflow,
    dropped: AtomicU64,
    /// Events the writer took but could not write.
    unwritten: AtomicU64,
    writer: OnceLock<std::thread::Thread>,
    /// The writer took events: there is room again.
    drained: Notify,
    /// Flushes asked for, and the last one done.
    flushes_asked: AtomicU64,
    flushed: watch::Sender<u64>,
    closed: AtomicBool,
}

/// Lines not written yet.
#[derive(Default)]
struct Buffer {
    lines: Vec<u8>,
    events: usize,
}

impl JsonLinesSink {
    /// Starts the writer thread; at most `capacity` events wait to be written.
    ///
    /// # Panics
    ///
    /// When `capacity` is zero, or the thread cannot be started.
    pub fn new(writer: impl Write + Send + 'static, capacity: usize, overflow: Overflow) -> Self {
        assert!(
            capacity > 0,
            "an audit sink needs room for at least one event"
        );
        let shared = Arc::new(Shared {
            buffer: Mutex::default(),
            pending: AtomicUsize::new(0),
            capacity,
            overflow,
            dropped: AtomicU64::new(0),
            unwritten: AtomicU64::new(0),
            writer: OnceLock::new(),
            drained: Notify::new(),
            flushes_asked: AtomicU64::new(0),
            flushed: watch::Sender::new(0),
            closed: AtomicBool::new(false),
        });
        let thread = std::thread::Builder::new()
            .name("zerotrust-audit".into())
            .spawn({
                let shared = shared.clone();
                move || write_lines(writer, &shared)
            })
            .expect("the audit writer thread starts");
        let _ = shared.writer.set(thread.thread().clone());
        Self {
            handle: Arc::new(Handle(shared)),
        }
    }

    /// Appends to the file at `path`, creating it.
    ///
    /// # Errors
    ///
    /// The file cannot be opened.
    pub fn append_to(
        path: impl AsRef<std::path::Path>,
        capacity: usize,
        overflow: Overflow,
    ) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self::new(file, capacity, overflow))
    }

    /// How many events were dropped because `capacity` events were waiting.
    pub fn dropped(&self) -> u64 {
        self.shared().dropped.load(Ordering::Relaxed)
    }

    /// How many events could not be written because the writer failed (a full disk, a closed
    /// pipe), its write or its flush. The first failure is logged at error level, and the
    /// recovery once writes succeed again. An upper bound: a write that failed midway may have
    /// left some of its events in the file, whole or in part.
    pub fn unwritten(&self) -> u64 {
        self.shared().unwritten.load(Ordering::Relaxed)
    }

    /// Waits until every event recorded so far is written and the writer flushed.
    pub async fn flush(&self) {
        let shared = self.shared();
        let mut flushed = shared.flushed.subscribe();
        let asked = shared.flushes_asked.fetch_add(1, Ordering::AcqRel) + 1;
        shared.wake_writer();
        let _ = flushed.wait_for(|done| *done >= asked).await;
    }

    fn shared(&self) -> &Shared {
        &self.handle.0
    }

    /// Formats one line into a buffer, or waits for room, or drops it, as the overflow says.
    fn append(&self, line: impl FnOnce(&mut Vec<u8>) + Send + 'static) -> Recording {
        let shared = self.shared();
        let Err(line) = shared.try_append(line) else {
            return Recording(None);
        };
        match shared.overflow {
            Overflow::DropAndCount => {
                shared.dropped.fetch_add(1, Ordering::Relaxed);
                Recording(None)
            }
            Overflow::Wait => Recording(Some(Box::pin(self.clone().wait_for_room(line)))),
        }
    }

    async fn wait_for_room(self, line: impl FnOnce(&mut Vec<u8>)) {
        let mut formatted = Vec::new();
        line(&mut formatted);
        let shared = self.shared();
        loop {
            // Made before the check: a drain between the two is not missed.
            let drained = shared.drained.notified();
            if shared
                .try_append(|out: &mut Vec<u8>| out.extend_from_slice(&formatted))
                .is_ok()
            {
                return;
            }
            drained.await;
        }
    }
}

impl Shared {
    /// Appends `line` to the buffer, unless `capacity` events are waiting (then `line` is
    /// handed back, not called). The line is formatted in this thread's scratch buffer first,
    /// so the lock is held for a copy only.
    fn try_append<L: FnOnce(&mut Vec<u8>)>(&self, line: L) -> Result<(), L> {
        let before = self.pending.fetch_add(1, Ordering::AcqRel);
        if before >= self.capacity {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(line);
        }
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            line(scratch);
            let mut buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
            buffer.lines.extend_from_slice(scratch);
            buffer.events += 1;
        });
        if before == 0 {
            self.wake_writer();
        }
        Ok(())
    }

    fn wake_writer(&self) {
        if let Some(writer) = self.writer.get() {
            writer.unpark();
        }
    }
}

impl std::fmt::Debug for JsonLinesSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesSink")
            .field("overflow", &self.shared().overflow)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

/// How long the writer lets lines gather while events keep coming (a wake-up costs
/// microseconds; an event should cost a fraction of one).
const GATHER: Duration = Duration::from_millis(5);

/// The writer thread: parked while there is nothing to write; while events keep coming, it
/// takes the buffer, writes it, and pauses briefly, unless a quarter of the capacity was
/// waiting (then it goes on at once, so that senders do not find it full).
fn write_lines(mut out: impl Write, shared: &Shared) {
    let mut spare = Vec::with_capacity(64 * 1024);
    let mut health = Health {
        unwritten: &shared.unwritten,
        failing: false,
        unflushed: 0,
    };
    loop {
        let asked = shared.flushes_asked.load(Ordering::Acquire);
        let closed = shared.closed.load(Ordering::Acquire);
        let taken = {
            let mut buffer = shared.buffer.lock().unwrap_or_else(PoisonError::into_inner);
            std::mem::swap(&mut buffer.lines, &mut spare);
            std::mem::take(&mut buffer.events)
        };
        if taken > 0 {
            health.wrote(out.write_all(&spare), taken);
            spare.clear();
            shared.pending.fetch_sub(taken, Ordering::AcqRel);
            shared.drained.notify_waiters();
        }
        if taken > 0 || asked > *shared.flushed.borrow() || closed {
            health.flushed(out.flush());
            shared.flushed.send_replace(asked);
        }
        if closed && shared.pending.load(Ordering::Acquire) == 0 {
            return;
        }
        let flush_asked = shared.flushes_asked.load(Ordering::Acquire) > asked;
        match next(
            taken,
            shared.capacity,
            shared.pending.load(Ordering::Acquire),
            flush_asked,
        ) {
            Next::Go => {}
            Next::Gather => std::thread::sleep(GATHER),
            Next::Park => std::thread::park(),
        }
    }
}

/// What the writer knows of its writes: every event a failed write or flush lost is counted;
/// the first failure is logged at error level and the recovery at warn level, not each
/// failure.
struct Health<'a> {
    unwritten: &'a AtomicU64,
    failing: bool,
    /// Events written since the last flush: a buffering writer (a `BufWriter`) loses them if
    /// the flush fails.
    unflushed: usize,
}

impl Health<'_> {
    fn wrote(&mut self, result: std::io::Result<()>, events: usize) {
        match result {
            Ok(()) => self.unflushed += events,
            Err(error) => self.lost(events, &error),
        }
    }

    fn flushed(&mut self, result: std::io::Result<()>) {
        let events = std::mem::take(&mut self.unflushed);
        match result {
            Err(error) => self.lost(events, &error),
            Ok(()) if self.failing && events > 0 => {
                self.failing = false;
                let unwritten = self.unwritten.load(Ordering::Relaxed);
                tracing::warn!(target: "tower_zerotrust::audit", unwritten, "audit events are written again");
            }
            Ok(()) => {}
        }
    }

    fn lost(&mut self, events: usize, error: &std::io::Error) {
        self.unwritten.fetch_add(events as u64, Ordering::Relaxed);
        if !self.failing {
            self.failing = true;
            tracing::error!(target: "tower_zerotrust::audit", %error, "cannot write audit events");
        }
    }
}

/// What the writer does after a round.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Take the buffer again at once: a flush is waiting, or the buffer filled fast.
    Go,
    /// Let lines gather a while.
    Gather,
    /// Nothing is coming: sleep until a line or a flush wakes it.
    Park,
}

fn next(taken: usize, capacity: usize, pending: usize, flush_asked: bool) -> Next {
    if flush_asked || (taken > 0 && taken >= capacity / 4) {
        Next::Go
    } else if taken > 0 || pending > 0 {
        Next::Gather
    } else {
        Next::Park
    }
}

impl AuditSink for JsonLinesSink {
    type Future = Recording;

    fn record(&self, event: AuditEvent) -> Self::Future {
        self.append(move |out| {
            out.extend_from_slice(event.to_json().as_bytes());
            out.push(b'\n');
        })
    }

    fn record_gathered(&self, record: AuditRecord) -> Self::Future {
        self.append(move |out| record.write_json_line(out))
    }
}

/// The future of [`JsonLinesSink::record`]: ready at once unless it waits for room.
pub struct Recording(Option<Pin<Box<dyn Future<Output = ()> + Send>>>);

impl Future for Recording {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.0 {
            None => Poll::Ready(()),
            Some(waiting) => waiting.as_mut().poll(cx),
        }
    }
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Recording(waiting)"
        } else {
            "Recording(done)"
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::SystemTime;

    use http::Method;

    use super::*;
    use crate::audit::{EventType, Metadata, Status, TraceId};

    /// What the writer wrote.
    #[derive(Clone, Default)]
    struct Written(Arc<Mutex<Vec<u8>>>);

    impl Write for Written {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn event(resource: String) -> AuditEvent {
        AuditEvent {
            timestamp: SystemTime::now(),
            event_type: EventType::Access,
            status: Status::Success,
            principal: None,
            resource,
            action: Method::GET,
            source_ip: Some(IpAddr::from([127, 0, 0, 1])),
            user_agent: None,
            trace_id: TraceId::random(),
            metadata: Metadata {
                roles: Arc::from(Vec::new()),
                auth_method: None,
                layer: None,
                reason: None,
                http_status: 200,
                grpc_status: None,
                latency_ms: 0.1,
                shadow_refusal: None,
                shadow_disagreement: None,
                explanation: None,
            },
        }
    }

    /// A full disk until `recovered` is set: its writes fail, or (a `BufWriter`) its writes
    /// are accepted and lost when the flush fails.
    #[derive(Clone)]
    struct FullDisk {
        written: Written,
        recovered: Arc<AtomicBool>,
        buffered: bool,
    }

    impl FullDisk {
        fn full() -> std::io::Error {
            std::io::Error::from(std::io::ErrorKind::StorageFull)
        }
    }

    impl Write for FullDisk {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            match (self.recovered.load(Ordering::SeqCst), self.buffered) {
                (true, _) => self.written.write(buf),
                (false, true) => Ok(buf.len()),
                (false, false) => Err(Self::full()),
            }
        }
        fn flush(&mut self) -> std::io::Result<()> {
            match (self.recovered.load(Ordering::SeqCst), self.buffered) {
                (false, true) => Err(Self::full()),
                _ => Ok(()),
            }
        }
    }

    /// Events a failing writer loses, at the write or at the flush, are counted, nothing
    /// waits on them, and the events after the disk recovers are written.
    #[tokio::test]
    async fn events_a_failing_writer_loses_are_counted() {
        for buffered in [false, true] {
            let disk = FullDisk {
                written: Written::default(),
                recovered: Arc::default(),
                buffered,
            };
            let sink = JsonLinesSink::new(disk.clone(), 4, Overflow::Wait);
            for i in 0..10 {
                sink.record(event(format!("/lost/{i}"))).await;
            }
            sink.flush().await;
            assert_eq!(sink.unwritten(), 10, "buffered: {buffered}");
            assert_eq!(sink.dropped(), 0);
            disk.recovered.store(true, Ordering::SeqCst);
            for i in 0..3 {
                sink.record(event(format!("/kept/{i}"))).await;
            }
            sink.flush().await;
            assert_eq!(sink.unwritten(), 10, "buffered: {buffered}");
            let written = String::from_utf8(disk.written.0.lock().unwrap().clone()).unwrap();
            assert_eq!(written.lines().count(), 3, "{written}");
            assert!(!written.contains("/lost/"));
        }
    }

    /// An idle writer sleeps, whatever the capacity (a capacity below 4 once kept it spinning).
    #[test]
    fn the_writer_rests_when_nothing_comes() {
        for capacity in [1, 2, 3, 4, 1024] {
            assert_eq!(
                next(0, capacity, 0, false),
                Next::Park,
                "capacity {capacity}"
            );
            assert_eq!(
                next(0, capacity, 1, false),
                Next::Gather,
                "capacity {capacity}"
            );
        }
        assert_eq!(next(1, 1024, 0, false), Next::Gather);
        assert_eq!(next(256, 1024, 0, false), Next::Go);
        assert_eq!(next(1, 2, 0, false), Next::Go);
        assert_eq!(next(0, 1024, 0, true), Next::Go);
    }

    /// Requests that end one after the other, on whatever threads, are written in that order.
    #[tokio::test]
    async fn lines_keep_the_order_in_which_requests_ended() {
        let written = Written::default();
        let sink = JsonLinesSink::new(written.clone(), 1024, Overflow::Wait);
        for i in 0..40 {
            let sink = sink.clone();
            std::thread::spawn(move || drop(sink.record(event(format!("/{i}")))))
                .join()
                .unwrap();
        }
        sink.flush().await;
        let text = String::from_utf8(written.0.lock().unwrap().clone()).unwrap();
        let resources: Vec<String> = text
            .lines()
            .map(|line| {
                serde_json::from_str::<serde_json::Value>(line).unwrap()["resource"].to_string()
            })
            .collect();
        let expected: Vec<String> = (0..40).map(|i| format!("\"/{i}\"")).collect();
        assert_eq!(resources, expected);
    }
}
