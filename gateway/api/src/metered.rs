//! The RPC metrics (README "Metrics") that [`crate::access::AccessLayer`]
//! records for every call it sees, refused ones included:
//! `posgate_requests_total{rpc,code}` and
//! `posgate_request_duration_seconds{rpc}`.
//!
//! Labels are bounded: `rpc` is the gRPC method path when it names a
//! method posgate serves ([`rpc_label`]; anything else is `unknown`) and
//! `code` the canonical name of the status the client got. A call is
//! counted when its answer ends: at once for a trailers-only answer (every
//! error, every refusal), else when the body's trailers go out, through
//! [`MeteredBody`]; an answer dropped before its end (the client went away)
//! counts as `CANCELLED`. Label values are `&'static str`, so recording
//! formats nothing.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Instant;

use http::HeaderMap;
use prost::Message as _;
use tonic::body::Body;
use tonic::{Code, Status};

/// `posgate_requests_total{rpc,code}`: finished calls by method and status code.
pub const REQUESTS_TOTAL: &str = "posgate_requests_total";
/// `posgate_request_duration_seconds{rpc}`: from the call reaching the
/// access layer to its last frame.
pub const REQUEST_DURATION_SECONDS: &str = "posgate_request_duration_seconds";

/// The `rpc` label of a path that names no method posgate serves.
pub const UNKNOWN_RPC: &str = "unknown";

/// The methods served beside posgate's own: gRPC health and reflection.
const OTHER_RPCS: [&str; 4] = [
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// Every method path posgate serves: its own services' methods (from the
/// protos' descriptors, so a new method is counted under its own name the
/// day it is added), health and reflection.
static RPCS: LazyLock<HashSet<String>> = LazyLock::new(|| {
    let descriptors = prost_types::FileDescriptorSet::decode(posgate_proto::FILE_DESCRIPTOR_SET)
        .expect("posgate_proto's descriptor set decodes");
    let mut rpcs: HashSet<String> = OTHER_RPCS.iter().map(|&rpc| rpc.to_owned()).collect();
    for file in &descriptors.file {
        for service in &file.service {
            for method in &service.method {
                rpcs.insert(format!(
                    "/{}.{}/{}",
                    file.package(),
                    service.name(),
                    method.name()
                ));
            }
        }
    }
    rpcs
});

/// The `rpc` label of a request path: the path when posgate serves that
/// method, else [`UNKNOWN_RPC`] (so a client cannot mint label values).
pub fn rpc_label(path: &str) -> &'static str {
    RPCS.get(path).map_or(UNKNOWN_RPC, String::as_str)
}

/// The `code` label: the status code's canonical gRPC name.
pub fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Counts one finished call.
pub fn record(rpc: &'static str, code: Code, started: Instant) {
    metrics::counter!(REQUESTS_TOTAL, "rpc" => rpc, "code" => code_label(code)).increment(1);
    metrics::histogram!(REQUEST_DURATION_SECONDS, "rpc" => rpc)
        .record(started.elapsed().as_secs_f64());
}

/// The `grpc-status` of a header map (trailers, or the headers of a
/// trailers-only answer).
fn code_in(headers: &HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|value| Code::from_bytes(value.as_bytes()))
}

/// The code of a trailers-only answer as the client will see it: tonic's
/// refusal of an oversize request leaves the request size layer as
/// `RESOURCE_EXHAUSTED`.
fn answered_code(headers: &HeaderMap, code: Code) -> Code {
    if code != Code::OutOfRange {
        return code;
    }
    match Status::from_header_map(headers) {
        Some(status) if crate::oversize::too_large_sizes(&status).is_some() => {
            Code::ResourceExhausted
        }
        _ => code,
    }
}

/// Counts a trailers-only answer now; wraps any other answer's body so the
/// call is counted when its trailers go out.
pub fn meter(
    rpc: &'static str,
    started: Instant,
    response: http::Response<Body>,
) -> http::Response<Body> {
    if let Some(code) = code_in(response.headers()) {
        record(rpc, answered_code(response.headers(), code), started);
        return response;
    }
    if http_body::Body::is_end_stream(response.body()) {
        // No status in the headers and no trailers to come: the client
        // gets no gRPC status at all.
        record(rpc, Code::Unknown, started);
        return response;
    }
    response.map(|inner| {
        Body::new(MeteredBody {
            inner,
            rpc,
            started,
            recorded: false,
        })
    })
}

/// A response body that counts its call when the trailers pass (or when it
/// ends or is dropped without them).
#[derive(Debug)]
pub struct MeteredBody {
    inner: Body,
    rpc: &'static str,
    started: Instant,
    recorded: bool,
}

impl MeteredBody {
    fn finish(&mut self, code: Code) {
        if !self.recorded {
            self.recorded = true;
            record(self.rpc, code, self.started);
        }
    }
}

impl http_body::Body for MeteredBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    self.finish(code_in(trailers).unwrap_or(Code::Unknown));
                }
            }
            Poll::Ready(Some(Err(status))) => self.finish(status.code()),
            // A gRPC answer ends with trailers; one that ends without them
            // reaches the client as an error.
            Poll::Ready(None) => self.finish(Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        // Dropped before its end: the client went away (or the connection did).
        self.finish(Code::Cancelled);
    }
}

pin_project_lite::pin_project! {
    /// The inner service's future, whose answer [`meter`] counts.
    #[derive(Debug)]
    pub struct MeteredFuture<F> {
        #[pin]
        inner: F,
        rpc: &'static str,
        started: Instant,
    }
}

impl<F> MeteredFuture<F> {
    pub fn new(inner: F, rpc: &'static str, started: Instant) -> Self {
        Self {
            inner,
            rpc,
            started,
        }
    }
}

impl<F, E> Future for MeteredFuture<F>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answer = std::task::ready!(this.inner.poll(cx));
        Poll::Ready(answer.map(|response| meter(this.rpc, *this.started, response)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Served methods are their own label; anything else is `unknown`.
    #[test]
    fn rpc_labels_are_bounded() {
        assert_eq!(
            rpc_label("/posgate.v1.BillPaymentService/PayBill"),
            "/posgate.v1.BillPaymentService/PayBill"
        );
        assert_eq!(
            rpc_label("/posgate.v1.PaymentService/Authorize"),
            "/posgate.v1.PaymentService/Authorize"
        );
        assert_eq!(
            rpc_label("/grpc.health.v1.Health/Check"),
            "/grpc.health.v1.Health/Check"
        );
        assert_eq!(
            rpc_label("/posgate.v1.BillPaymentService/Nope"),
            UNKNOWN_RPC
        );
        assert_eq!(rpc_label("/S001/T01/4111111111111111"), UNKNOWN_RPC);
    }

    /// A trailers-only answer carries its code in the headers; tonic's
    /// oversize refusal is counted as the `RESOURCE_EXHAUSTED` the client gets.
    #[test]
    fn trailers_only_codes() {
        let answer = Status::invalid_argument("bad").into_http::<Body>();
        assert_eq!(code_in(answer.headers()), Some(Code::InvalidArgument));
        let too_large = Status::out_of_range(
            "Error, decoded message length too large: found 70000 bytes, the limit is: 65536 bytes",
        )
        .into_http::<Body>();
        assert_eq!(
            answered_code(too_large.headers(), Code::OutOfRange),
            Code::ResourceExhausted
        );
        let other = Status::out_of_range("page past the end").into_http::<Body>();
        assert_eq!(
            answered_code(other.headers(), Code::OutOfRange),
            Code::OutOfRange
        );
    }
}
