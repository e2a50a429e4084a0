use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufReader, BufWriter, ErrorKind, Read};

use std::io::Write; // Codara patch: flushing refusals
use std::net::SocketAddr;
use std::str::FromStr;
// Codara patch: limits, read deadlines, connection control, framing checks.
use std::sync::Arc;
use std::time::Instant;

use crate::common::{HTTPVersion, Header, Method};
use crate::request::{ConnectionControl, RequestControl};
use crate::util::{ReadDeadline, RefinedTcpStream};
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::{Limits, Request};

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: IoResult<Option<SocketAddr>>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // true if the connection goes through SSL
    secure: bool,

    // Codara patch: the limits, the connection's read deadline and the handle requests get on
    // the connection; when the current request's first byte arrived and how long its head is.
    limits: Arc<Limits>,
    deadline: Arc<ReadDeadline>,
    control: Option<Arc<ConnectionControl>>,
    request_started: Option<Instant>,
    head_bytes: usize,
}

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    WrongRequestLine,
    WrongHeader(HTTPVersion),
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed(HTTPVersion),
    ReadIoError(IoError),
    // Codara patch: a version other than 1.0/1.1 (505), ambiguous body framing (400), a head
    // over `Limits::max_head_bytes` (431).
    UnsupportedVersion,
    BadFraming(HTTPVersion, &'static str),
    HeadTooLarge,
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        limits: Arc<Limits>, // Codara patch
    ) -> ClientConnection {
        let remote_addr = read_socket.peer_addr();
        let secure = read_socket.secure();
        // Codara patch: the deadline shared by the connection thread and its requests.
        let deadline = Arc::new(ReadDeadline::default());
        let control = read_socket.try_clone_connection().map(|socket| {
            Arc::new(ConnectionControl {
                socket,
                deadline: Arc::clone(&deadline),
            })
        });
        let read_socket = read_socket.with_deadline(Arc::clone(&deadline));

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            secure,
            limits,
            deadline,
            control,
            request_started: None,
            head_bytes: 0,
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Reads the next line from self.next_header_source.
    ///
    /// Reads until `CRLF` is reached. The next read will start
    ///  at the first byte of the new line.
    // Codara patch: returns `ReadError` (for `HeadTooLarge`).
    fn read_next_line(&mut self) -> Result<AsciiString, ReadError> {
        let mut buf = Vec::new();
        let mut prev_byte_was_cr = false;

        loop {
            let byte = self.next_header_source.by_ref().bytes().next();

            let byte = match byte {
                Some(b) => b.map_err(ReadError::ReadIoError)?,
                None => {
                    return Err(ReadError::ReadIoError(IoError::new(
                        ErrorKind::ConnectionAborted,
                        "Unexpected EOF",
                    )))
                }
            };

            // Codara patch: waiting for a request is bounded by SO_RCVTIMEO (the idle
            // keep-alive); once its first byte is here the whole head has a deadline and a size
            // limit, so a client sending a byte at a time cannot hold this thread for ever.
            if self.request_started.is_none() {
                let now = Instant::now();
                self.request_started = Some(now);
                if let Some(allowance) = &self.limits.request_deadline {
                    self.deadline.set_head(Some(now + allowance(0)));
                }
            }
            self.head_bytes += 1;
            if self.head_bytes > self.limits.max_head_bytes {
                return Err(ReadError::HeadTooLarge);
            }

            if byte == b'\n' && prev_byte_was_cr {
                buf.pop(); // removing the '\r'
                return AsciiString::from_ascii(buf).map_err(|_| {
                    ReadError::ReadIoError(IoError::new(
                        ErrorKind::InvalidInput,
                        "Header is not in ASCII",
                    ))
                });
            }

            prev_byte_was_cr = byte == b'\r';

            buf.push(byte);
        }
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        // Codara patch: a new request; its clock starts with its first byte.
        self.request_started = None;
        self.head_bytes = 0;
        let (method, path, version, headers) = {
            // reading the request line
            let (method, path, version) = {
                let line = self.read_next_line()?;

                parse_request_line(
                    line.as_str().trim(), // TODO: remove this conversion
                )?
            };

            // Codara patch: answer other versions now (505) instead of after the headers, where
            // the answer sat unflushed while the connection waited for another request.
            if version != HTTPVersion(1, 0) && version != HTTPVersion(1, 1) {
                return Err(ReadError::UnsupportedVersion);
            }

            // getting all headers
            let headers = {
                let mut headers = Vec::new();
                loop {
                    let line = self.read_next_line()?;

                    if line.is_empty() {
                        break;
                    };
                    headers.push(match FromStr::from_str(line.as_str().trim()) {
                        // TODO: remove this conversion
                        Ok(h) => h,
                        _ => return Err(ReadError::WrongHeader(version)),
                    });
                }

                headers
            };

            (method, path, version, headers)
        };

        // Codara patch: refuse ambiguous framing (request smuggling); a small body read below
        // gets the deadline of its length, counted from the request's first byte.
        let length = body_framing(&headers).map_err(|e| ReadError::BadFraming(version.clone(), e))?;
        if let (Some(allowance), Some(started)) =
            (&self.limits.request_deadline, self.request_started)
        {
            self.deadline
                .set_head(Some(started + allowance(length.unwrap_or(0))));
        }

        // building the writer for the request
        let writer = self.sink.next().unwrap();
        let control = self.control.as_ref().map(|connection| RequestControl {
            connection: Arc::clone(connection),
            turn: writer.turn(),
        });

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // building the next reader
        let request = crate::request::new_request(
            self.secure,
            method,
            path,
            version.clone(),
            headers,
            *self.remote_addr.as_ref().unwrap(),
            data_source,
            writer,
            control,
        );
        // Codara patch: the rest of the body, if any, is read under the deadline its reader sets.
        self.deadline.set_head(None);
        let request = request.map_err(|e| {
            use crate::request;
            match e {
                request::RequestCreationError::CreationIoError(e) => ReadError::ReadIoError(e),
                request::RequestCreationError::ExpectationFailed => {
                    ReadError::ExpectationFailed(version)
                }
            }
        })?;

        // return the request
        Ok(request)
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        use crate::{Response, StatusCode};

        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            return None;
        }

        loop {
            // Codara patch: every refusal below is flushed, says `Connection: close` and closes
            // (upstream left some unflushed in the write buffer, so the client saw silence).
            let rq = match self.read() {
                Err(ReadError::WrongRequestLine) => {
                    self.refuse(400, HTTPVersion(1, 1), "malformed request line");
                    return None; // we don't know where the next request would start,
                                 // se we have to close
                }

                Err(ReadError::WrongHeader(ver)) => {
                    self.refuse(400, ver, "malformed header");
                    return None; // we don't know where the next request would start,
                                 // se we have to close
                }

                Err(ReadError::BadFraming(ver, reason)) => {
                    self.refuse(400, ver, reason);
                    return None;
                }

                Err(ReadError::UnsupportedVersion) => {
                    self.refuse(
                        505,
                        HTTPVersion(1, 1),
                        "This server only supports HTTP versions 1.0 and 1.1",
                    );
                    return None;
                }

                Err(ReadError::HeadTooLarge) => {
                    self.refuse(431, HTTPVersion(1, 1), "request head too large");
                    return None;
                }

                // A request that started but did not arrive in time; an idle keep-alive
                // connection that times out is just closed.
                Err(ReadError::ReadIoError(ref err))
                    if matches!(err.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock)
                        && self.request_started.is_some() =>
                {
                    self.refuse(408, HTTPVersion(1, 1), "the request did not arrive in time");
                    return None; // closing the connection
                }

                Err(ReadError::ExpectationFailed(ver)) => {
                    self.refuse(417, ver, "unsupported Expect header");
                    return None; // TODO: should be recoverable, but needs handling in case of body
                }

                Err(ReadError::ReadIoError(_)) => return None,

                Ok(rq) => rq,
            };

            // updating the status of the connection
            let connection_header = rq
                .headers()
                .iter()
                .find(|h| h.field.equiv("Connection"))
                .map(|h| h.value.as_str());

            let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

            match lowercase {
                Some(ref val) if val.contains("close") => self.no_more_requests = true,
                Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
                Some(ref val)
                    if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
                {
                    self.no_more_requests = true
                }
                None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
                _ => (),
            };

            // returning the request
            return Some(rq);
        }
    }
}

impl ClientConnection {
    /// Codara patch: answers `status` with a short text, flushed, before the connection closes.
    fn refuse(&mut self, status: u16, version: HTTPVersion, message: &str) {
        use crate::{Response, StatusCode};
        let mut writer = self.sink.next().unwrap();
        let response = Response::from_string(message.to_owned())
            .with_status_code(StatusCode(status))
            .with_connection_close();
        if response
            .raw_print(&mut writer, version, &[], false, None)
            .is_ok()
        {
            writer.flush().ok();
        }
    }
}

/// Codara patch: the declared body length of a request (`None`: chunked or no body), refusing
/// framings that two parsers could read differently (request smuggling): several Content-Length
/// headers (even equal), one that is not plain digits, Content-Length with Transfer-Encoding,
/// several Transfer-Encoding headers, or a coding other than `chunked`.
fn body_framing(headers: &[Header]) -> Result<Option<usize>, &'static str> {
    let mut lengths = headers.iter().filter(|h| h.field.equiv("Content-Length"));
    let mut codings = headers
        .iter()
        .filter(|h| h.field.equiv("Transfer-Encoding"));
    let length = lengths.next();
    if lengths.next().is_some() {
        return Err("more than one Content-Length header");
    }
    let coding = codings.next();
    if codings.next().is_some() {
        return Err("more than one Transfer-Encoding header");
    }
    match (length, coding) {
        (Some(_), Some(_)) => Err("Content-Length together with Transfer-Encoding"),
        (Some(length), None) => {
            let value = length.value.as_str();
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err("Content-Length is not a number");
            }
            value
                .parse()
                .map(Some)
                .map_err(|_| "Content-Length is too large")
        }
        (None, Some(coding)) if coding.value.as_str().eq_ignore_ascii_case("chunked") => Ok(None),
        (None, Some(_)) => Err("unsupported Transfer-Encoding; only chunked is accepted"),
        (None, None) => Ok(None),
    }
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    // Codara patch: any HTTP/<digit>.<digit> parses, so that versions other than 1.0/1.1 get
    // a 505 rather than a 400.
    match version.strip_prefix("HTTP/").map(str::as_bytes) {
        Some(&[major, b'.', minor]) if major.is_ascii_digit() && minor.is_ascii_digit() => {
            Ok(HTTPVersion(major - b'0', minor - b'0'))
        }
        _ => Err(ReadError::WrongRequestLine),
    }
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    let mut parts = line.split(' ');

    let method = parts.next().and_then(|w| w.parse().ok());
    let path = parts.next().map(ToOwned::to_owned);
    let version = parts.next().and_then(|w| parse_http_version(w).ok());

    method
        .and_then(|method| Some((method, path?, version?)))
        .ok_or(ReadError::WrongRequestLine)
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
        // Codara patch: other versions parse (to be answered 505), nonsense does not.
        let (_, _, ver) = super::parse_request_line("GET / HTTP/1.2").unwrap();
        assert!(ver == crate::common::HTTPVersion(1, 2));
        assert!(super::parse_request_line("GET / HTTP/10.0").is_err());
        assert!(super::parse_request_line("GET / HTTPS/1.1").is_err());
    }

    #[test]
    fn body_framing_refuses_ambiguity() {
        fn framing(headers: &[&str]) -> Result<Option<usize>, &'static str> {
            let headers: Vec<crate::Header> = headers.iter().map(|h| h.parse().unwrap()).collect();
            super::body_framing(&headers)
        }
        assert_eq!(framing(&[]), Ok(None));
        assert_eq!(framing(&["Content-Length: 12"]), Ok(Some(12)));
        assert_eq!(framing(&["Transfer-Encoding: Chunked"]), Ok(None));
        assert!(framing(&["Content-Length: 5", "content-length: 5"]).is_err());
        assert!(framing(&["Content-Length: 5", "Transfer-Encoding: chunked"]).is_err());
        assert!(framing(&["Content-Length: +5"]).is_err());
        assert!(framing(&["Content-Length: 5, 5"]).is_err());
        assert!(framing(&["Content-Length: 99999999999999999999999"]).is_err());
        assert!(framing(&["Transfer-Encoding: gzip, chunked"]).is_err());
        assert!(framing(&["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"]).is_err());
    }
}
