//! Runs the handshake over a byte stream (a `TcpStream` in the agent; any async stream in
//! tests): each message behind a u32 big-endian length, every read under a timeout and
//! the whole handshake under another, lengths above [`handshake::MAX_MESSAGE`] refused
//! before any allocation. Reads the clock and the OS RNG; the state machine stays pure.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::{SeedableRng as _, rngs::StdRng};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use super::{
    handshake::{self, Context, Established, HandshakeError, Initiator, Responder},
    refusal::Refusal,
    spiffe::SpiffeId,
};

/// Time bounds of one handshake.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// For each read and write.
    pub io_timeout: Duration,
    /// For the whole exchange.
    pub total_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            io_timeout: Duration::from_secs(3),
            total_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a handshake over a stream failed.
#[derive(Debug, thiserror::Error)]
pub enum TcpError {
    /// The stream failed or closed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer was too slow.
    #[error("timed out")]
    Timeout,
    /// A length prefix above the largest handshake message.
    #[error("message of {0} bytes refused")]
    TooLarge(usize),
    /// The peer's message was refused.
    #[error("{0}")]
    Handshake(#[from] HandshakeError),
}

impl TcpError {
    /// The refusal reason, for what the peer sent; `None` for transport failures.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            Self::Io(_) | Self::Timeout => None,
            Self::TooLarge(_) => Some(Refusal::Oversized),
            Self::Handshake(e) => Some(e.refusal()),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

async fn io<T>(
    limit: Duration,
    f: impl Future<Output = std::io::Result<T>>,
) -> Result<T, TcpError> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| TcpError::Timeout)?
        .map_err(TcpError::Io)
}

/// Writes one length-prefixed message.
pub async fn write_message<S: AsyncWrite + Unpin>(
    s: &mut S,
    msg: &[u8],
    limits: &Limits,
) -> Result<(), TcpError> {
    let len = u32::try_from(msg.len()).map_err(|_| TcpError::TooLarge(msg.len()))?;
    let mut framed = Vec::with_capacity(4 + msg.len());
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(msg);
    io(limits.io_timeout, s.write_all(&framed)).await?;
    io(limits.io_timeout, s.flush()).await
}

/// Reads one length-prefixed message of at most [`handshake::MAX_MESSAGE`] bytes.
pub async fn read_message<S: AsyncRead + Unpin>(
    s: &mut S,
    limits: &Limits,
) -> Result<Vec<u8>, TcpError> {
    let mut len = [0u8; 4];
    io(limits.io_timeout, s.read_exact(&mut len)).await?;
    let len = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
    if len > handshake::MAX_MESSAGE {
        return Err(TcpError::TooLarge(len));
    }
    let mut buf = vec![0u8; len];
    io(limits.io_timeout, s.read_exact(&mut buf)).await?;
    Ok(buf)
}

/// Dials side: sends message 1, checks message 2, sends message 3.
pub async fn initiate<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    ctx: &Context<'_>,
    expected: Option<SpiffeId>,
    limits: Limits,
) -> Result<Established, TcpError> {
    let run = async {
        let (init, msg1) = Initiator::start(&mut StdRng::from_os_rng(), expected, now_ms())?;
        write_message(s, &msg1, &limits).await?;
        let msg2 = read_message(s, &limits).await?;
        let (est, msg3) = init.finish(ctx, &msg2, now_ms())?;
        write_message(s, &msg3, &limits).await?;
        Ok(est)
    };
    tokio::time::timeout(limits.total_timeout, run)
        .await
        .map_err(|_| TcpError::Timeout)?
}

/// Listening side: answers message 1, checks message 3.
pub async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    responder: &Responder,
    ctx: &Context<'_>,
    limits: Limits,
) -> Result<Established, TcpError> {
    let run = async {
        let msg1 = read_message(s, &limits).await?;
        let msg2 = responder.respond(ctx, &msg1, now_ms(), &mut StdRng::from_os_rng())?;
        write_message(s, &msg2, &limits).await?;
        let msg3 = read_message(s, &limits).await?;
        Ok(responder.accept(ctx, &msg3, now_ms())?)
    };
    tokio::time::timeout(limits.total_timeout, run)
        .await
        .map_err(|_| TcpError::Timeout)?
}

#[cfg(test)]
mod tests {
    use super::{
        super::{cert::fixture::Authority, session::RekeyPolicy},
        *,
    };

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn handshake_over_a_real_tcp_connection() {
        // Certificates valid around the real clock: the driver reads it.
        let now_s = now_ms() / 1000;
        let a = Authority::new("mesh.test");
        let store = a.store();
        let id1 = SpiffeId::node("mesh.test", "r1").expect("id");
        let id2 = SpiffeId::node("mesh.test", "r2").expect("id");
        let n1 = a.node_with(&id1, 10, now_s - 60, now_s + 3600);
        let n2 = a.node_with(&id2, 11, now_s - 60, now_s + 3600);
        let responder = Responder::new(&mut StdRng::from_os_rng());
        let c1 = Context {
            identity: &n1,
            trust: &store,
            rekey: RekeyPolicy::default(),
        };
        let c2 = Context {
            identity: &n2,
            trust: &store,
            rekey: RekeyPolicy::default(),
        };
        rt().block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let server = async {
                let (mut s, _) = listener.accept().await.expect("accept");
                respond(&mut s, &responder, &c2, Limits::default()).await
            };
            let client = async {
                let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
                initiate(&mut s, &c1, Some(id2.clone()), Limits::default()).await
            };
            let (srv, cli) = tokio::join!(server, client);
            let (mut srv, mut cli) = (srv.expect("responder side"), cli.expect("initiator side"));
            assert_eq!(srv.peer.id, id1, "responder authenticated r1");
            assert_eq!(cli.peer.id, id2, "initiator authenticated r2");
            let env = cli.session.seal(b"frame", 0).expect("seals");
            assert_eq!(
                srv.session.open(&env).expect("opens"),
                b"frame",
                "keys agree"
            );
        });
    }

    #[test]
    fn oversized_and_slow_peers_are_cut_off() {
        let limits = Limits {
            io_timeout: Duration::from_millis(50),
            total_timeout: Duration::from_millis(200),
        };
        rt().block_on(async {
            let (mut a, mut b) = tokio::io::duplex(64);
            a.write_all(&u32::MAX.to_be_bytes()).await.expect("write");
            assert!(
                matches!(
                    read_message(&mut b, &limits).await,
                    Err(TcpError::TooLarge(_))
                ),
                "4 GiB length accepted"
            );
            // Nothing more arrives: a timeout, not a hang.
            let (_a, mut b) = tokio::io::duplex(64);
            assert!(
                matches!(read_message(&mut b, &limits).await, Err(TcpError::Timeout)),
                "silent peer"
            );
        });
    }
}
