//! Neighbour probing: a sender thread that emits probe requests on time, and the pure
//! link-quality arithmetic over what the data plane recorded of the replies.

pub mod quality;
mod sender;

pub use self::sender::{Peer, Sender, Sent};
