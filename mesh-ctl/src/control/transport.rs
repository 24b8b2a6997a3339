//! Control messages over UDP on IPv6 link-local multicast, one socket for every mesh
//! interface: the sender's scope id says which interface a message came in on, and a
//! message to one interface goes out there only.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
#[cfg(test)]
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::UdpSocket;

use super::message::{FrameError, MAX_FRAME, Message, decode, encode};

/// The link-local group every agent joins on every mesh interface.
const GROUP: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0x7830, 0x6f6c);

/// The agent's control socket.
pub struct Control {
    socket: UdpSocket,
    port: u16,
    /// The mesh interfaces: control messages count only from a link-local address on one.
    ifindexes: Vec<u32>,
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
        Ok(Self {
            socket,
            port,
            ifindexes: ifindexes.to_vec(),
        })
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

    /// A neighbour speaks from its link-local address on one of our mesh interfaces.
    fn is_a_neighbour(&self, from: &SocketAddrV6) -> bool {
        from.ip().is_unicast_link_local() && self.ifindexes.contains(&from.scope_id())
    }

    /// Waits for the next datagram from a neighbour; anything else is counted
    /// (`x0tta6bl4_control_foreign_total`) and dropped.
    pub async fn recv(&self, buf: &mut [u8]) -> anyhow::Result<Received> {
        loop {
            let (n, from) = self
                .socket
                .recv_from(buf)
                .await
                .context("receiving control messages")?;
            let ifindex = match from {
                SocketAddr::V6(v6) if self.is_a_neighbour(&v6) => v6.scope_id(),
                _ => {
                    // Loopback, IPv4, global or another interface's senders are no
                    // neighbours of ours, whatever they send.
                    metrics::counter!("x0tta6bl4_control_foreign_total").increment(1);
                    continue;
                }
            };
            let SocketAddr::V6(from) = from else { continue };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::MacAddr, control::message::Hello};

    #[tokio::test]
    async fn messages_from_loopback_or_ipv4_are_not_taken() {
        let control = Control::bind(0, &[]).expect("bind");
        let port = control.socket.local_addr().expect("addr").port();
        let msg = Message::Hello(Hello {
            node: "evil-lo".into(),
            mac: MacAddr([2, 0, 0, 0, 0, 9]),
            heard: Vec::new(),
            hello_interval_ms: 100,
            restarting: false,
        });
        let bytes = encode(&msg).expect("encode");
        let v6 = std::net::UdpSocket::bind("[::1]:0").expect("v6");
        v6.send_to(&bytes, ("::1", port))
            .expect("send over loopback");
        let v4 = std::net::UdpSocket::bind("127.0.0.1:0").expect("v4");
        v4.send_to(&bytes, ("127.0.0.1", port))
            .expect("send over IPv4");
        let mut buf = Control::buffer();
        let got = tokio::time::timeout(Duration::from_millis(300), control.recv(&mut buf)).await;
        assert!(got.is_err(), "a datagram from no neighbour was taken");
    }
}
