//! fanout-signal: the control plane. Tenants (SDKAppIDs) with their roles and quotas, admission with
//! TRTC-compatible credentials, rooms and their lifecycle, and the WebSocket protocol's messages.
//!
//! - [`config`]: per-application settings and role parameter sets.
//! - [`ids`]: UserID and room id validation.
//! - [`protocol`]: parsing requests, shaping replies and events.
//! - [`hub`]: the sans-I/O state machine that admits users and runs room lifecycle.
//! - [`media`]: stream kinds and the commands signalling gives the media workers.
//! - [`error`]: error codes.

pub mod config;
pub mod error;
pub mod hub;
pub mod ids;
pub mod media;
pub mod protocol;

pub use config::{AppConfig, RoleConfig};
pub use error::SignalError;
pub use hub::{AppCounts, Callback, CallbackEvent, ConnId, Hub, Now, Reply, RoomSummary};
pub use ids::{RoomId, UserId};
pub use media::{
    LayerChoice, MediaOut, MediaTarget, PublishLimits, PublishPlan, StreamKind, WantedStream,
};
pub use protocol::{Constraints, Event, ExitReason, KickReason, Request, MAX_RENDER_SIDE};
