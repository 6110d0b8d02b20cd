//! Audit events as JSON lines, written by a thread of their own off the request path.

use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{AuditEvent, AuditRecord, AuditSink};

/// What to do when the queue is full.
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

enum Message {
    /// What the audit layer gathered: formatted on the writer thread.
    Record(AuditRecord),
    /// An event made elsewhere. Boxed: the queue's slots stay small.
    Event(Box<AuditEvent>),
    Flush(oneshot::Sender<()>),
}

/// Writes each event as one line of JSON to a writer (a file, stdout), from a dedicated
/// thread fed by a bounded queue, so requests never wait on I/O unless you choose
/// [`Overflow::Wait`] and the queue is full.
///
/// Call [`flush`](Self::flush) after the server's graceful shutdown: every event recorded before
/// it is then written and flushed.
///
/// Cheap to clone; clones share the queue.
#[derive(Clone)]
pub struct JsonLinesSink {
    /// One reference count per clone (the layer clones the sink for each request).
    shared: Arc<Shared>,
}

struct Shared {
    sender: mpsc::Sender<Message>,
    overflow: Overflow,
    dropped: AtomicU64,
}

impl JsonLinesSink {
    /// Starts the writer thread with a queue of `capacity` events.
    ///
    /// # Panics
    ///
    /// When `capacity` is zero, or the thread cannot be started.
    pub fn new(writer: impl Write + Send + 'static, capacity: usize, overflow: Overflow) -> Self {
        let (sender, receiver) = mpsc::channel(capacity);
        std::thread::Builder::new()
            .name("zerotrust-audit".into())
            .spawn(move || write_lines(writer, receiver, capacity))
            .expect("the audit writer thread starts");
        Self {
            shared: Arc::new(Shared {
                sender,
                overflow,
                dropped: AtomicU64::new(0),
            }),
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

    /// How many events were dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every event recorded so far is written and the writer flushed.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.shared.sender.send(Message::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }
}

impl std::fmt::Debug for JsonLinesSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesSink")
            .field("overflow", &self.shared.overflow)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

/// How long the writer lets events gather while they keep coming: senders then push into the
/// queue without waking this thread for each event (a wake-up costs microseconds; an event
/// should cost nanoseconds on the request path).
const GATHER: Duration = Duration::from_millis(5);

/// The writer thread: parked while there is nothing to write; while events keep coming, it
/// formats what has gathered into one buffer, writes it, and pauses briefly, unless the queue
/// filled by a quarter of its `capacity` meanwhile (senders must not find it full).
fn write_lines(writer: impl Write, mut receiver: mpsc::Receiver<Message>, capacity: usize) {
    let mut out = Lines {
        out: writer,
        buffer: Vec::with_capacity(64 * 1024),
        failed: false,
    };
    while let Some(first) = receiver.blocking_recv() {
        out.take(first);
        loop {
            let mut gathered = 0;
            while let Ok(message) = receiver.try_recv() {
                out.take(message);
                gathered += 1;
            }
            out.flush();
            if gathered == 0 {
                break;
            }
            if gathered < capacity / 4 {
                std::thread::sleep(GATHER);
            }
        }
    }
    out.flush();
}

struct Lines<W: Write> {
    out: W,
    /// Formatted lines not written yet.
    buffer: Vec<u8>,
    failed: bool,
}

impl<W: Write> Lines<W> {
    /// Lines are written once this many bytes have gathered, and at every flush.
    const WRITE_AT: usize = 60 * 1024;

    fn take(&mut self, message: Message) {
        match message {
            Message::Record(record) => record.write_json_line(&mut self.buffer),
            Message::Event(event) => {
                self.buffer.extend_from_slice(event.to_json().as_bytes());
                self.buffer.push(b'\n');
            }
            Message::Flush(ack) => {
                self.flush();
                let _ = ack.send(());
                return;
            }
        }
        if self.buffer.len() >= Self::WRITE_AT {
            self.write();
        }
    }

    fn write(&mut self) {
        let written = self.out.write_all(&self.buffer);
        self.buffer.clear();
        self.report(written);
    }

    fn flush(&mut self) {
        self.write();
        let flushed = self.out.flush();
        self.report(flushed);
    }

    /// The first failure is logged; the trail is then known to be incomplete.
    fn report(&mut self, result: std::io::Result<()>) {
        if let Err(error) = result
            && !self.failed
        {
            self.failed = true;
            tracing::error!(target: "tower_zerotrust::audit", %error, "cannot write audit events");
        }
    }
}

impl JsonLinesSink {
    fn send(&self, message: Message) -> Recording {
        let shared = &*self.shared;
        match shared.sender.try_send(message) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => Recording(None),
            Err(mpsc::error::TrySendError::Full(message)) => match shared.overflow {
                Overflow::DropAndCount => {
                    shared.dropped.fetch_add(1, Ordering::Relaxed);
                    Recording(None)
                }
                Overflow::Wait => {
                    let sender = shared.sender.clone();
                    Recording(Some(Box::pin(async move {
                        let _ = sender.send(message).await;
                    })))
                }
            },
        }
    }
}

impl AuditSink for JsonLinesSink {
    type Future = Recording;

    fn record(&self, event: AuditEvent) -> Self::Future {
        self.send(Message::Event(Box::new(event)))
    }

    fn record_gathered(&self, record: AuditRecord) -> Self::Future {
        self.send(Message::Record(record))
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
