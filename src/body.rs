//! The response body of every server layer: the inner service's body, or a rejection's.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// A response body that is either the wrapped service's body or the small, fully buffered
    /// body of a rejection.
    ///
    /// Layers return it so that they can write problem details without requiring anything of
    /// your body type; it implements [`http_body::Body`] whenever your body does.
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Full { data: Option<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    /// Wraps the inner service's body.
    pub fn new(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn full(data: Bytes) -> Self {
        Self {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }

    pub(crate) fn empty() -> Self {
        Self {
            kind: Kind::Full { data: None },
        }
    }
}

impl<B> Default for ResponseBody<B> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Inner { .. } => f.write_str("ResponseBody::Inner"),
            Kind::Full { data } => f
                .debug_tuple("ResponseBody::Full")
                .field(&data.as_ref().map_or(0, Bytes::len))
                .finish(),
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

/// Why a body could not be read whole.
#[cfg(feature = "httpsig")]
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// More bytes than the limit.
    #[error("body longer than {0} bytes")]
    TooLarge(usize),
    /// The body stream failed.
    #[error("body could not be read: {0}")]
    Unreadable(crate::BoxError),
}

/// Reads a body's data (trailers are dropped) up to `limit` bytes. A body of one frame, as
/// most are, is passed on without a copy.
#[cfg(feature = "httpsig")]
pub(crate) async fn read_bounded<B>(body: B, limit: usize) -> Result<Bytes, ReadError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<crate::BoxError>,
{
    use http_body_util::BodyExt;
    if body.size_hint().lower() > limit as u64 {
        return Err(ReadError::TooLarge(limit));
    }
    let mut body = std::pin::pin!(body);
    let mut first = Bytes::new();
    let mut more: Option<bytes::BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Unreadable(e.into()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let read = more.as_ref().map_or(first.len(), bytes::BytesMut::len);
        if read + data.len() > limit {
            return Err(ReadError::TooLarge(limit));
        }
        match &mut more {
            Some(more) => more.extend_from_slice(&data),
            None if first.is_empty() => first = data,
            None if data.is_empty() => {}
            None => {
                let mut joined = bytes::BytesMut::with_capacity(read + data.len());
                joined.extend_from_slice(&first);
                joined.extend_from_slice(&data);
                more = Some(joined);
            }
        }
    }
    Ok(more.map_or(first, bytes::BytesMut::freeze))
}

#[cfg(all(test, feature = "httpsig"))]
mod tests {
    use std::collections::VecDeque;
    use std::io;

    use http_body_util::Full;

    use super::*;

    /// A streamed body: its frames, one per poll, a failure among them if wanted.
    struct Chunks(VecDeque<Result<&'static [u8], io::Error>>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
            let next = self.0.pop_front();
            Poll::Ready(next.map(|chunk| chunk.map(|c| Frame::data(Bytes::from_static(c)))))
        }
    }

    fn chunks(parts: &[&'static [u8]]) -> Chunks {
        Chunks(parts.iter().map(|p| Ok(*p)).collect())
    }

    #[tokio::test]
    async fn bodies_are_read_whole_within_the_limit() {
        let one = read_bounded(Full::new(Bytes::from_static(b"abc")), 3).await;
        assert_eq!(one.unwrap(), "abc");
        let several = read_bounded(chunks(&[b"ab", b"", b"cd", b"e"]), 5).await;
        assert_eq!(several.unwrap(), "abcde");
        assert_eq!(read_bounded(chunks(&[]), 0).await.unwrap(), "");
        // One byte over, whether announced by the size hint or found while reading.
        let announced = read_bounded(Full::new(Bytes::from_static(b"abcd")), 3).await;
        assert!(matches!(announced, Err(ReadError::TooLarge(3))));
        let streamed = read_bounded(chunks(&[b"ab", b"cd"]), 3).await;
        assert!(matches!(streamed, Err(ReadError::TooLarge(3))));
        let failing = Chunks(VecDeque::from([
            Ok(&b"ab"[..]),
            Err(io::Error::other("reset")),
        ]));
        assert!(matches!(
            read_bounded(failing, 10).await,
            Err(ReadError::Unreadable(_))
        ));
    }
}
