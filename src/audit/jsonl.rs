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
/// The line is formatted where the request ends, into one of a few buffers (one per core, so
/// that threads do not contend), and the writer thread writes the buffers out every few
/// milliseconds while events keep coming: no allocation, queue slot or wake-up per event.
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
    shards: Box<[Mutex<Shard>]>,
    /// Events formatted or being formatted, not yet taken by the writer.
    pending: AtomicUsize,
    capacity: usize,
    overflow: Overflow,
    dropped: AtomicU64,
    writer: OnceLock<std::thread::Thread>,
    /// The writer took events: there is room again.
    drained: Notify,
    /// Flushes asked for, and the last one done.
    flushes_asked: AtomicU64,
    flushed: watch::Sender<u64>,
    closed: AtomicBool,
}

#[derive(Default)]
struct Shard {
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
        let shards = std::thread::available_parallelism().map_or(4, |n| (2 * n.get()).min(64));
        let shared = Arc::new(Shared {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            pending: AtomicUsize::new(0),
            capacity,
            overflow,
            dropped: AtomicU64::new(0),
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
    /// Appends `line` to this thread's buffer, unless `capacity` events are waiting (then
    /// `line` is handed back, not called).
    fn try_append<L: FnOnce(&mut Vec<u8>)>(&self, line: L) -> Result<(), L> {
        let before = self.pending.fetch_add(1, Ordering::AcqRel);
        if before >= self.capacity {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(line);
        }
        {
            let mut shard = self.shards[shard_index(self.shards.len())]
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            line(&mut shard.lines);
            shard.events += 1;
        }
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

/// This thread's buffer: threads are spread over the buffers as they first record.
fn shard_index(shards: usize) -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    INDEX.with(|index| index % shards)
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
/// takes the buffers, writes them, and pauses briefly, unless a quarter of the capacity was
/// waiting (then it goes on at once, so that senders do not find it full).
fn write_lines(mut out: impl Write, shared: &Shared) {
    let mut spare = Vec::with_capacity(64 * 1024);
    let mut failed = false;
    let mut report = |result: std::io::Result<()>| {
        if let Err(error) = result
            && !failed
        {
            failed = true;
            tracing::error!(target: "tower_zerotrust::audit", %error, "cannot write audit events");
        }
    };
    loop {
        let asked = shared.flushes_asked.load(Ordering::Acquire);
        let closed = shared.closed.load(Ordering::Acquire);
        let mut taken = 0;
        for shard in &shared.shards {
            {
                let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
                if shard.events == 0 {
                    continue;
                }
                std::mem::swap(&mut shard.lines, &mut spare);
                taken += std::mem::take(&mut shard.events);
            }
            report(out.write_all(&spare));
            spare.clear();
        }
        if taken > 0 {
            shared.pending.fetch_sub(taken, Ordering::AcqRel);
            shared.drained.notify_waiters();
        }
        if taken > 0 || asked > *shared.flushed.borrow() || closed {
            report(out.flush());
            shared.flushed.send_replace(asked);
        }
        if closed && shared.pending.load(Ordering::Acquire) == 0 {
            return;
        }
        if taken >= shared.capacity / 4 || shared.flushes_asked.load(Ordering::Acquire) > asked {
            continue;
        }
        if taken > 0 || shared.pending.load(Ordering::Acquire) > 0 {
            std::thread::sleep(GATHER);
        } else {
            std::thread::park();
        }
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
