//! Control messages over UDP on IPv6 link-local multicast, one socket for every mesh
//! interface: the sender's scope id says which interface a message came in on, and a
//! message to one interface goes out there only.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

use anyhow::Context as _;
use tokio::net::UdpSocket;

use super::message::{FrameError, MAX_FRAME, Message, decode, encode};

/// The link-local group every agent joins on every mesh interface.
const GROUP: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0x7830, 0x6f6c);

/// The agent's control socket.
pub struct Control {
    socket: UdpSocket,
    port: u16,
}

/// One datagram received.
pub enum Received {
    /// A message, and the interface (ifindex) and address it came from.
    Message {
        msg: Message,
        ifindex: u32,
        from: SocketAddrV6,
    },
    /// Bytes that were not a message (counted, never acted on).
    Malformed { ifindex: u32, error: FrameError },
    /// A sealed envelope (`secure::session`), to be opened with the sender's session.
    Sealed {
        bytes: Vec<u8>,
        ifindex: u32,
        from: SocketAddrV6,
    },
}

impl Control {
    /// Binds the port and joins the group on each interface.
    pub fn bind(port: u16, ifindexes: &[u32]) -> anyhow::Result<Self> {
        let std = std::net::UdpSocket::bind(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0))
            .with_context(|| format!("binding UDP port {port} for control messages"))?;
        std.set_nonblocking(true)
            .context("making the control socket non-blocking")?;
        std.set_multicast_loop_v6(false)
            .context("turning multicast loopback off")?;
        for &ifindex in ifindexes {
            std.join_multicast_v6(&GROUP, ifindex)
                .with_context(|| format!("joining {GROUP} on interface {ifindex}"))?;
        }
        let socket = UdpSocket::from_std(std).context("registering the control socket")?;
        Ok(Self { socket, port })
    }

    /// Sends a message to every agent on interface `ifindex`.
    pub async fn multicast(&self, ifindex: u32, msg: &Message) -> anyhow::Result<()> {
        let to = SocketAddrV6::new(GROUP, self.port, 0, ifindex);
        self.send(to, msg).await
    }

    /// Sends a message to one agent.
    pub async fn send(&self, to: SocketAddrV6, msg: &Message) -> anyhow::Result<()> {
        let bytes = encode(msg).context("framing a control message")?;
        self.socket
            .send_to(&bytes, to)
            .await
            .with_context(|| format!("sending a control message to {to}"))?;
        Ok(())
    }

    /// Sends bytes as they are (a sealed envelope) to one agent.
    pub async fn send_bytes(&self, to: SocketAddrV6, bytes: &[u8]) -> anyhow::Result<()> {
        self.socket
            .send_to(bytes, to)
            .await
            .with_context(|| format!("sending a sealed control message to {to}"))?;
        Ok(())
    }

    /// A receive buffer large enough for any frame (and one byte more, to see oversize).
    pub fn buffer() -> Vec<u8> {
        vec![0; MAX_FRAME + 1]
    }

    /// Waits for the next datagram.
    pub async fn recv(&self, buf: &mut [u8]) -> anyhow::Result<Received> {
        loop {
            let (n, from) = self
                .socket
                .recv_from(buf)
                .await
                .context("receiving control messages")?;
            let SocketAddr::V6(from) = from else { continue };
            let ifindex = from.scope_id();
            if crate::secure::session::is_envelope(&buf[..n]) {
                return Ok(Received::Sealed {
                    bytes: buf[..n].to_vec(),
                    ifindex,
                    from,
                });
            }
            return Ok(match decode(&buf[..n]) {
                Ok(msg) => Received::Message { msg, ifindex, from },
                Err(error) => Received::Malformed { ifindex, error },
            });
        }
    }
}
