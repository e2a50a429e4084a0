use std::io::Result as IoResult;
use std::io::{Error as IoError, ErrorKind, Read, Write}; // Codara patch: errors
use std::net::{Shutdown, SocketAddr};
// Codara patch: the read deadline.
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::ReadDeadline;

use crate::connection::Connection;
#[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
use crate::ssl::SslStream;

pub(crate) enum Stream {
    Http(Connection),
    #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
    Https(SslStream),
}

impl Clone for Stream {
    fn clone(&self) -> Self {
        match self {
            Stream::Http(tcp_stream) => Stream::Http(tcp_stream.try_clone().unwrap()),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => Stream::Https(ssl_stream.clone()),
        }
    }
}

impl From<Connection> for Stream {
    fn from(tcp_stream: Connection) -> Self {
        Stream::Http(tcp_stream)
    }
}

impl Stream {
    fn secure(&self) -> bool {
        match self {
            Stream::Http(_) => false,
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => true,
        }
    }

    fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.peer_addr(),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.peer_addr(),
        }
    }

    fn shutdown(&mut self, how: Shutdown) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.shutdown(how),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.shutdown(how),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.read(buf),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.write(buf),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.write(buf),
        }
    }

    fn flush(&mut self) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.flush(),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.flush(),
        }
    }
}

pub struct RefinedTcpStream {
    stream: Stream,
    close_read: bool,
    close_write: bool,
    // Codara patch: the connection's read deadline, enforced by shortening SO_RCVTIMEO before
    // each read; `base` is the socket's own timeout, `applied` what the socket has now.
    deadline: Option<Arc<ReadDeadline>>,
    base: Option<Duration>,
    applied: Option<Duration>,
}

impl RefinedTcpStream {
    pub(crate) fn new<S>(stream: S) -> (RefinedTcpStream, RefinedTcpStream)
    where
        S: Into<Stream>,
    {
        let stream: Stream = stream.into();

        let (read, write) = (stream.clone(), stream);

        let read = RefinedTcpStream {
            stream: read,
            close_read: true,
            close_write: false,
            deadline: None, // Codara patch: set by `with_deadline`
            base: None,
            applied: None,
        };

        let write = RefinedTcpStream {
            stream: write,
            close_read: false,
            close_write: true,
            deadline: None, // Codara patch: writes have no deadline
            base: None,
            applied: None,
        };

        (read, write)
    }

    /// Returns true if this struct wraps around a secure connection.
    #[inline]
    pub(crate) fn secure(&self) -> bool {
        self.stream.secure()
    }

    pub(crate) fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        self.stream.peer_addr()
    }

    /// Codara patch: a second handle of the plain socket (none for TLS), for a `Request` to set
    /// timeouts on and shut down.
    pub(crate) fn try_clone_connection(&self) -> Option<Connection> {
        match &self.stream {
            Stream::Http(connection) => connection.try_clone().ok(),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => None,
        }
    }

    /// Codara patch: makes reads of this (plain) stream fail with `TimedOut` once `deadline`
    /// passes. The socket's current SO_RCVTIMEO stays the per-read limit when it is shorter.
    pub(crate) fn with_deadline(mut self, deadline: Arc<ReadDeadline>) -> RefinedTcpStream {
        let connection = match &self.stream {
            Stream::Http(connection) => connection,
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => return self,
        };
        self.base = connection.read_timeout().ok().flatten();
        self.applied = self.base;
        self.deadline = Some(deadline);
        self
    }

    // Codara patch: see `with_deadline`.
    fn apply_deadline(&mut self) -> IoResult<()> {
        let Some(deadline) = &self.deadline else {
            return Ok(());
        };
        let wanted = match deadline.current() {
            None => self.base,
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(IoError::new(ErrorKind::TimedOut, "read deadline passed"));
                }
                Some(self.base.map_or(left, |base| base.min(left)))
            }
        };
        if wanted != self.applied {
            match &self.stream {
                Stream::Http(connection) => connection.set_read_timeout(wanted)?,
                #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
                Stream::Https(_) => {}
            }
            self.applied = wanted;
        }
        Ok(())
    }
}

impl Drop for RefinedTcpStream {
    fn drop(&mut self) {
        if self.close_read {
            self.stream.shutdown(Shutdown::Read).ok();
        }

        if self.close_write {
            self.stream.shutdown(Shutdown::Write).ok();
        }
    }
}

impl Read for RefinedTcpStream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        self.apply_deadline()?; // Codara patch
        self.stream.read(buf)
    }
}

impl Write for RefinedTcpStream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> IoResult<()> {
        self.stream.flush()
    }
}
