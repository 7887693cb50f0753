//! A blocking connection to a shard, plain or TLS, for the conversations Lazarus speaks
//! the protocol on itself (a snapshot's `SYNC`, rounds of `DUMP`): the async client's
//! counterpart (`client.rs`), with the same TLS configuration per shard and the same
//! second try without resuming.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::client::resumption_refused;
use super::{ShardAddr, Transport};

/// A blocking connection to `shard` (over TLS when it speaks it), with `timeout` for
/// connecting and for every read and write; nothing sent yet.
pub fn connect_stream(shard: &ShardAddr, timeout: Duration) -> Result<Stream, String> {
    let (host, port) = (shard.host.as_str(), shard.port);
    let addr = format!("{host}:{port}");
    match &shard.transport {
        Transport::Plain => Ok(Stream::Plain(connect_tcp(&addr, host, port, timeout)?)),
        Transport::Tls(tls) => {
            let name = rustls_pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| format!("`{addr}`: {e}"))?;
            let handshake = |config| {
                let tcp = connect_tcp(&addr, host, port, timeout)?;
                Ok::<_, String>(tls_handshake(tcp, config, name.clone()))
            };
            // As the async client does (`server::client`): this shard's own session
            // store, and once more without resuming when the shard refuses to resume
            // (`tls-session-caching no`).
            match handshake(tls.shard_config(host, port))? {
                Ok(stream) => Ok(stream),
                Err(e) if resumption_refused(&e) => handshake(tls.fresh_config())?
                    .map_err(|e| format!("`{addr}`: TLS handshake: {e}")),
                Err(e) => Err(format!("`{addr}`: TLS handshake: {e}")),
            }
        }
        Transport::TlsUnavailable(why) => {
            Err(format!("`{addr}`: the database speaks TLS but {why}"))
        }
    }
}

/// A new TCP connection to `host:port` with `timeout` for connecting and for every read
/// and write.
fn connect_tcp(addr: &str, host: &str, port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let sock = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("`{addr}`: {e}"))?
        .next()
        .ok_or_else(|| format!("`{addr}`: no address"))?;
    let stream =
        TcpStream::connect_timeout(&sock, timeout).map_err(|e| format!("`{addr}`: {e}"))?;
    let _ = stream.set_nodelay(true);
    // A snapshot or a round of DUMP replies arrives in bulk: a deep receive buffer lets
    // the server write on while this side is busy reading (the kernel caps it at
    // net.core.rmem_max; failing to raise it is harmless).
    {
        use std::os::fd::AsRawFd;
        let size: libc::c_int = 8 << 20;
        // SAFETY: a valid socket, a c_int option value of the size passed.
        unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("`{addr}`: {e}"))?;
    Ok(stream)
}

/// A TLS handshake over `tcp` with `config`, done before anything is sent: a shard's
/// refusal to resume is then told from a failure of the conversation.
fn tls_handshake(
    mut tcp: TcpStream,
    config: std::sync::Arc<rustls::ClientConfig>,
    name: rustls_pki_types::ServerName<'static>,
) -> io::Result<Stream> {
    let mut conn = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    Ok(Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))))
}

/// The socket, plain or wrapped in TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    /// The socket under the stream (for its timeouts).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}
