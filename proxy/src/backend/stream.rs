//! The transport of a backend connection: TCP, or the server's unix socket when the instance runs
//! on the proxy's host and `[backend] sockets` names its socket. The instance keeps its address as
//! its name (metrics, errors, routing) either way; only the bytes take the cheaper path.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream, tcp, unix};

/// Dispatches an I/O call to whichever transport `$s` holds.
macro_rules! either {
    ($s:expr, $inner:ident => $e:expr) => {
        match $s {
            Self::Tcp($inner) => $e,
            Self::Unix($inner) => $e,
        }
    };
}

/// A connected backend socket.
pub enum BackendStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl BackendStream {
    /// Connects over `socket` when given, else over TCP to `addr`.
    pub async fn connect(addr: &str, socket: Option<&str>) -> io::Result<Self> {
        match socket {
            Some(path) => Ok(Self::Unix(UnixStream::connect(path).await?)),
            None => {
                let s = TcpStream::connect(addr).await?;
                let _ = s.set_nodelay(true);
                Ok(Self::Tcp(s))
            }
        }
    }

    /// Splits into owned halves (for the pipelined connections' reader task and writers).
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Self::Tcp(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Tcp(r), WriteHalf::Tcp(w))
            }
            Self::Unix(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Unix(r), WriteHalf::Unix(w))
            }
        }
    }
}

pub enum ReadHalf {
    Tcp(tcp::OwnedReadHalf),
    Unix(unix::OwnedReadHalf),
}

pub enum WriteHalf {
    Tcp(tcp::OwnedWriteHalf),
    Unix(unix::OwnedWriteHalf),
}

/// `AsyncRead` by dispatch, for the whole stream and for its read half.
macro_rules! read_by_dispatch {
    ($t:ty) => {
        impl AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                either!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
            }
        }
    };
}

read_by_dispatch!(BackendStream);
read_by_dispatch!(ReadHalf);

/// `AsyncWrite` by dispatch, for the whole stream and for its write half.
macro_rules! write_by_dispatch {
    ($t:ty) => {
        impl AsyncWrite for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                either!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                either!(self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs))
            }

            fn is_write_vectored(&self) -> bool {
                either!(self, s => s.is_write_vectored())
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                either!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                either!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
            }
        }
    };
}

write_by_dispatch!(BackendStream);
write_by_dispatch!(WriteHalf);
