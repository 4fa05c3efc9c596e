//! Telemetry protocols the sensor accepts, and their default UDP ports.

/// sFlow (sflow.org, sFlow version 5): IANA port 6343.
pub const SFLOW_PORT: u16 = 6343;
/// IPFIX (RFC 7011 §10.3.4): IANA port 4739.
pub const IPFIX_PORT: u16 = 4739;
/// NetFlow v5/v9: no IANA port; 2055 is the de-facto default of most exporters.
pub const NETFLOW_PORT: u16 = 2055;

/// What the sensor expects on a telemetry port. Stored as a `u8` in maps.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TelemetryKind {
    /// sFlow version 5.
    Sflow = 1,
    /// IPFIX (NetFlow v10).
    Ipfix = 2,
    /// NetFlow v5 or v9 (the datagram's version field tells which).
    Netflow = 3,
}

impl TelemetryKind {
    /// The kind stored in a map as `raw`, if it is one.
    pub const fn from_u8(raw: u8) -> Option<Self> {
        match raw {
            1 => Some(Self::Sflow),
            2 => Some(Self::Ipfix),
            3 => Some(Self::Netflow),
            _ => None,
        }
    }

    /// Lower-case name, as used in config files and CLI output.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Sflow => "sflow",
            Self::Ipfix => "ipfix",
            Self::Netflow => "netflow",
        }
    }
}
