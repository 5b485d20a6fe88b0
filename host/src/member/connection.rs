//! One blocking TCP connection to one broker: request framing, correlation
//! ids, deadlines, and the ApiVersions negotiation done when it opens.
//!
//! Owns the socket and the broker's version table. [`Connection::version`]
//! picks the highest version both this client (the `kafka-protocol` crate)
//! and the broker implement; [`Connection::call`] sends one request and
//! waits for its response; one call at a time, in order.
//!
//! Must never know about groups, members or retries: a failed call leaves
//! the connection unusable and the caller drops it (it is never reused
//! after an error, so a late response can never be taken for the next
//! one's).

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, StrBytes};

use super::error::{CallError, codes};

/// A request this client sends, with its API key and response type (the
/// crate's own `Request` trait needs its `broker` feature, so Weir keeps
/// this small mapping instead).
pub(crate) trait Api: Encodable + Message + HeaderVersion {
    const KEY: ApiKey;
    const NAME: &'static str;
    type Response: Decodable + HeaderVersion;
}

/// Responses larger than this are refused rather than allocated.
const MAX_FRAME: usize = 100 * 1024 * 1024;
/// `socket.connection.setup.timeout.ms`: a dead broker costs this much,
/// not a whole request timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Connection {
    stream: TcpStream,
    broker: String,
    client_id: StrBytes,
    next_correlation: i32,
    request_timeout: Duration,
    /// api key -> (min, max) the broker offers.
    versions: BTreeMap<i16, (i16, i16)>,
}

impl Connection {
    /// Connects to `broker` (`host:port`) and negotiates API versions.
    pub(crate) fn open(
        broker: &str,
        client_id: &str,
        request_timeout: Duration,
    ) -> Result<Self, CallError> {
        let stream = connect(broker, request_timeout.min(CONNECT_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let mut conn = Connection {
            stream,
            broker: broker.to_string(),
            client_id: StrBytes::from_string(client_id.to_string()),
            next_correlation: 0,
            request_timeout,
            versions: BTreeMap::new(),
        };
        conn.negotiate()?;
        Ok(conn)
    }

    /// The `host:port` this connection goes to.
    pub(crate) fn broker(&self) -> &str {
        &self.broker
    }

    /// A second handle on the socket, so another thread can shut it down to
    /// interrupt a long call (a parked JoinGroup) on close.
    pub(crate) fn interrupter(&self) -> Option<TcpStream> {
        self.stream.try_clone().ok()
    }

    /// The highest version of `A` both sides implement, at least
    /// `needed_min`.
    pub(crate) fn version<A: Api>(&self, needed_min: i16) -> Result<i16, CallError> {
        let ours = A::VERSIONS;
        let needed_min = needed_min.max(ours.min);
        let unsupported = |broker_min, broker_max| CallError::Unsupported {
            api: A::NAME,
            broker_min,
            broker_max,
            needed_min,
            needed_max: ours.max,
        };
        let Some(&(min, max)) = self.versions.get(&(A::KEY as i16)) else {
            return Err(unsupported(-1, -1));
        };
        let version = max.min(ours.max);
        if version < needed_min || version < min {
            return Err(unsupported(min, max));
        }
        Ok(version)
    }

    /// Sends `request` at `version` (from [`Connection::version`]) and waits
    /// up to `timeout` for its response.
    pub(crate) fn call<A: Api>(
        &mut self,
        request: &A,
        version: i16,
        timeout: Duration,
    ) -> Result<A::Response, CallError> {
        let body = self.exchange(request, version, timeout)?;
        decode_body::<A>(body, version)
    }

    /// Writes one framed request and returns the body of its response
    /// (header checked and removed).
    fn exchange<A: Api>(
        &mut self,
        request: &A,
        version: i16,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        let correlation_id = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(A::KEY as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0; 4]);
        header
            .encode(&mut buf, A::header_version(version))
            .map_err(|e| CallError::Protocol(format!("encoding the request header: {e}")))?;
        request
            .encode(&mut buf, version)
            .map_err(|e| CallError::Protocol(format!("encoding {} v{version}: {e}", A::NAME)))?;
        let size = i32::try_from(buf.len() - 4)
            .map_err(|_| CallError::Protocol(format!("{} request too large", A::NAME)))?;
        buf[..4].copy_from_slice(&size.to_be_bytes());

        let deadline = Instant::now() + timeout;
        self.stream
            .set_write_timeout(Some(self.request_timeout.max(Duration::from_millis(1))))?;
        self.stream.write_all(&buf)?;

        let mut size = [0u8; 4];
        self.read_exact_by(&mut size, deadline)?;
        let size = i32::from_be_bytes(size);
        if size < 4 || size as usize > MAX_FRAME {
            return Err(CallError::Protocol(format!(
                "{} response frame of {size} bytes",
                A::NAME
            )));
        }
        let mut frame = vec![0u8; size as usize];
        self.read_exact_by(&mut frame, deadline)?;
        let mut frame = Bytes::from(frame);
        let header_version = A::Response::header_version(version);
        let header = ResponseHeader::decode(&mut frame, header_version)
            .map_err(|e| CallError::Protocol(format!("{} response header: {e}", A::NAME)))?;
        if header.correlation_id != correlation_id {
            return Err(CallError::Protocol(format!(
                "{} response has correlation id {}, expected {correlation_id}",
                A::NAME,
                header.correlation_id
            )));
        }
        Ok(frame)
    }

    fn read_exact_by(&mut self, mut buf: &mut [u8], deadline: Instant) -> Result<(), CallError> {
        while !buf.is_empty() {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(CallError::Io(std::io::Error::new(
                    ErrorKind::TimedOut,
                    "no response within the request timeout",
                )));
            }
            self.stream.set_read_timeout(Some(remaining))?;
            match self.stream.read(buf) {
                Ok(0) => {
                    return Err(CallError::Io(std::io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "the broker closed the connection",
                    )));
                }
                Ok(n) => buf = &mut buf[n..],
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    // Loop: the deadline check above turns this into a
                    // timeout error.
                }
                Err(e) => return Err(CallError::Io(e)),
            }
        }
        Ok(())
    }

    /// ApiVersions at v3 (flexible); a broker that does not know v3 answers
    /// UNSUPPORTED_VERSION in v0 with its own range, and the request is
    /// sent again at the best version it offers.
    fn negotiate(&mut self) -> Result<(), CallError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("weir"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut version = 3;
        for _ in 0..2 {
            let body = self.exchange(&request, version, self.request_timeout)?;
            let response = match ApiVersionsResponse::decode(&mut body.clone(), version) {
                Ok(r) if r.error_code != codes::UNSUPPORTED_VERSION => r,
                _ => {
                    // Per the protocol, an unsupported ApiVersions version is
                    // answered in v0.
                    let v0 = ApiVersionsResponse::decode(&mut body.clone(), 0)
                        .map_err(|e| CallError::Protocol(format!("ApiVersions response: {e}")))?;
                    let offered = v0
                        .api_keys
                        .iter()
                        .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                        .map(|k| k.max_version)
                        .unwrap_or(0);
                    let next = offered.min(version - 1);
                    if v0.error_code == codes::UNSUPPORTED_VERSION && next >= 0 && next < version {
                        version = next;
                        continue;
                    }
                    v0
                }
            };
            if response.error_code != codes::NONE {
                return Err(CallError::Protocol(format!(
                    "ApiVersions answered error code {}",
                    response.error_code
                )));
            }
            self.versions = response
                .api_keys
                .iter()
                .map(|k| (k.api_key, (k.min_version, k.max_version)))
                .collect();
            return Ok(());
        }
        Err(CallError::Protocol(
            "no ApiVersions version acceptable to the broker".to_string(),
        ))
    }
}

impl Api for ApiVersionsRequest {
    const KEY: ApiKey = ApiKey::ApiVersions;
    const NAME: &'static str = "ApiVersions";
    type Response = ApiVersionsResponse;
}

fn decode_body<A: Api>(mut body: Bytes, version: i16) -> Result<A::Response, CallError> {
    let response = A::Response::decode(&mut body, version)
        .map_err(|e| CallError::Protocol(format!("{} v{version} response: {e}", A::NAME)))?;
    if body.has_remaining() {
        tracing::debug!(
            api = A::NAME,
            version,
            trailing = body.remaining(),
            "response has trailing bytes"
        );
    }
    Ok(response)
}

/// Resolves `broker` and connects to the first address that answers.
fn connect(broker: &str, timeout: Duration) -> Result<TcpStream, CallError> {
    let addrs = broker.to_socket_addrs().map_err(|e| {
        CallError::Io(std::io::Error::new(
            e.kind(),
            format!("resolving {broker}: {e}"),
        ))
    })?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(CallError::Io(last.unwrap_or_else(|| {
        std::io::Error::new(
            ErrorKind::NotFound,
            format!("{broker} resolves to no address"),
        )
    })))
}
