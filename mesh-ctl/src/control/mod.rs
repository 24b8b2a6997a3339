//! Agent-to-agent messages: one enum, one framing function. Authentication (a later
//! layer) wraps the framed bytes; routing never sees how they travelled.

mod message;
mod transport;

pub use self::{
    message::{FrameError, Hello, MAX_FRAME, Message, decode, encode},
    transport::{Control, Received},
};
