//! The answer to an oversize request: `RESOURCE_EXHAUSTED`, as gRPC's
//! conventions say, where tonic answers `OUT_OF_RANGE`.
//!
//! Every service is built with `max_decoding_message_size`
//! ([`MAX_REQUEST_BYTES`]); tonic checks a message's length
//! prefix against it before reading the message, so nothing large is ever
//! buffered. [`RequestSizeLayer`] rewrites that one refusal.

use std::task::{Context, Poll};

use futures::FutureExt as _;
use tonic::Status;

/// Largest request message any service accepts, in encoded bytes. POS and
/// audit requests are a few hundred bytes (the largest, a bill with its
/// barcodes or a card sale with track data, stays under 2 KiB); 64 KiB
/// leaves ample room for growth while a client cannot make the gateway
/// buffer megabytes. A larger request gets `RESOURCE_EXHAUSTED`.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Turns tonic's `OUT_OF_RANGE` for an over-limit request into `RESOURCE_EXHAUSTED`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestSizeLayer;

impl<S> tower::Layer<S> for RequestSizeLayer {
    type Service = RequestSizeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestSizeService { inner }
    }
}

/// The service [`RequestSizeLayer`] wraps around the router.
#[derive(Debug, Clone)]
pub struct RequestSizeService<S> {
    inner: S,
}

type Answer<E> = Result<http::Response<tonic::body::Body>, E>;

impl<S, B> tower::Service<http::Request<B>> for RequestSizeService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::Map<S::Future, fn(Answer<S::Error>) -> Answer<S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        self.inner
            .call(request)
            .map(resource_exhausted_if_too_large)
    }
}

/// A trailers-only answer carrying tonic's over-limit refusal becomes
/// `RESOURCE_EXHAUSTED` with the same sizes; any other answer is unchanged.
fn resource_exhausted_if_too_large<E>(answer: Answer<E>) -> Answer<E> {
    let response = answer?;
    let Some(status) = Status::from_header_map(response.headers()) else {
        return Ok(response);
    };
    match crate::oversize::too_large_sizes(&status) {
        Some(sizes) => {
            tracing::info!(sizes, "request refused: larger than the gateway accepts");
            Ok(Status::resource_exhausted(format!(
                "request message too large ({sizes}); posgate accepts requests of at most {MAX_REQUEST_BYTES} bytes"
            ))
            .into_http())
        }
        _ => Ok(response),
    }
}
