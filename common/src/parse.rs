//! What the telemetry parsers count, why they give up, and how far they walk.
//!
//! The kernel parser and the userspace decoder share these
//! definitions, so both count the same thing for the same datagram.

/// Traffic classes of a sampled packet. A packet is counted in `All`, in
/// exactly one of `Tcp`, `Udp`, `Icmp`, `Other` (by IP protocol), in
/// `TcpSyn` too if it is a TCP SYN without ACK, and in `Fragment` too if it
/// is an IP fragment (first or later).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    All = 0,
    Tcp = 1,
    TcpSyn = 2,
    Udp = 3,
    Icmp = 4,
    Fragment = 5,
    Other = 6,
}

impl Class {
    pub const COUNT: usize = 7;
    pub const ALL: [Class; Self::COUNT] = [
        Class::All,
        Class::Tcp,
        Class::TcpSyn,
        Class::Udp,
        Class::Icmp,
        Class::Fragment,
        Class::Other,
    ];

    /// The one class of `All`'s four (TCP, UDP, ICMP, other) that an IP
    /// protocol number belongs to.
    pub const fn of_protocol(proto: u8) -> Class {
        match proto {
            crate::proto::ipproto::TCP => Class::Tcp,
            crate::proto::ipproto::UDP => Class::Udp,
            crate::proto::ipproto::ICMP | crate::proto::ipproto::ICMPV6 => Class::Icmp,
            _ => Class::Other,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Class::All => "all",
            Class::Tcp => "tcp",
            Class::TcpSyn => "tcp_syn",
            Class::Udp => "udp",
            Class::Icmp => "icmp",
            Class::Fragment => "fragment",
            Class::Other => "other",
        }
    }
}

/// Why (part of) a datagram was not counted. Each is a counter per exporter.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ParseError {
    /// Version word is not 5 (sFlow).
    BadVersion = 0,
    /// sFlow agent address type is neither 1 (IPv4) nor 2 (IPv6).
    BadAgentAddress = 1,
    /// The datagram ends inside its header.
    TruncatedHeader = 2,
    /// A sample's length runs past the datagram, or is too short for its
    /// fixed part; the rest of the datagram is not read.
    BadSampleLength = 3,
    /// A record's length runs past its sample, or is too short for its fixed
    /// part; the rest of the sample is not read.
    BadRecordLength = 4,
    /// The header announces more samples than the datagram holds.
    MissingSamples = 5,
    /// More samples than the parser walks ([`MAX_SAMPLES`]); the rest are not counted.
    TooManySamples = 6,
    /// More records in a sample than the parser walks ([`MAX_RECORDS`]).
    TooManyRecords = 7,
    /// A flow sample with sampling rate 0: it cannot be scaled, so it is not counted.
    ZeroSamplingRate = 8,
    /// A flow sample with a sampling rate above [`MAX_SAMPLING_RATE`].
    SamplingRateTooHigh = 9,
    /// A flow sample from which no IP destination could be read (non-IP
    /// frame, unsupported header protocol, header cut before the address),
    /// or a flow record without a destination or a packet count.
    NoDestination = 10,
    /// Bytes after the announced samples: the sample count may have lied,
    /// so the datagram is passed on rather than dropped.
    TrailingBytes = 11,
    /// A datagram longer than [`MAX_DATAGRAM`] (no MTU allows one).
    DatagramTooLarge = 12,
    /// IPFIX: the message length disagrees with the datagram.
    BadMessageLength = 13,
    /// NetFlow v9 / IPFIX: a set length past the message or below 4.
    BadSetLength = 14,
    /// A template with an id below 256.
    BadTemplateId = 15,
    /// A template with no fields, a field of length 0, or fields past the set.
    BadTemplate = 16,
    /// An options template without scope, or whose scope runs past the set.
    BadOptionsTemplate = 17,
    /// A data set whose template was not (yet) received.
    NoTemplate = 18,
    /// A variable-length field running past its set.
    BadVariableLength = 19,
}

impl ParseError {
    pub const COUNT: usize = 20;
    pub const ALL: [ParseError; Self::COUNT] = [
        ParseError::BadVersion,
        ParseError::BadAgentAddress,
        ParseError::TruncatedHeader,
        ParseError::BadSampleLength,
        ParseError::BadRecordLength,
        ParseError::MissingSamples,
        ParseError::TooManySamples,
        ParseError::TooManyRecords,
        ParseError::ZeroSamplingRate,
        ParseError::SamplingRateTooHigh,
        ParseError::NoDestination,
        ParseError::TrailingBytes,
        ParseError::DatagramTooLarge,
        ParseError::BadMessageLength,
        ParseError::BadSetLength,
        ParseError::BadTemplateId,
        ParseError::BadTemplate,
        ParseError::BadOptionsTemplate,
        ParseError::NoTemplate,
        ParseError::BadVariableLength,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            ParseError::BadVersion => "bad_version",
            ParseError::BadAgentAddress => "bad_agent_address",
            ParseError::TruncatedHeader => "truncated_header",
            ParseError::BadSampleLength => "bad_sample_length",
            ParseError::BadRecordLength => "bad_record_length",
            ParseError::MissingSamples => "missing_samples",
            ParseError::TooManySamples => "too_many_samples",
            ParseError::TooManyRecords => "too_many_records",
            ParseError::ZeroSamplingRate => "zero_sampling_rate",
            ParseError::SamplingRateTooHigh => "sampling_rate_too_high",
            ParseError::NoDestination => "no_destination",
            ParseError::TrailingBytes => "trailing_bytes",
            ParseError::DatagramTooLarge => "datagram_too_large",
            ParseError::BadMessageLength => "bad_message_length",
            ParseError::BadSetLength => "bad_set_length",
            ParseError::BadTemplateId => "bad_template_id",
            ParseError::BadTemplate => "bad_template",
            ParseError::BadOptionsTemplate => "bad_options_template",
            ParseError::NoTemplate => "no_template",
            ParseError::BadVariableLength => "bad_variable_length",
        }
    }

    /// Whether the datagram could not be fully accounted for (it is then
    /// passed on to the stack rather than dropped). `NoDestination` is not:
    /// an ARP frame in a sample is normal traffic, not a parse failure.
    pub const fn is_fatal(self) -> bool {
        !matches!(self, ParseError::NoDestination)
    }
}

/// Longest datagram parsed: the kernel copies each datagram into a per-CPU
/// buffer of this size (a power of two, above any 9216-byte jumbo MTU).
pub const MAX_DATAGRAM: usize = 16384;
/// NetFlow v5 records per datagram (Cisco's format: 1 to 30).
pub const MAX_NETFLOW5_RECORDS: u32 = 30;
/// NetFlow v5 header and record sizes.
pub const NETFLOW5_HEADER: u32 = 24;
pub const NETFLOW5_RECORD: u32 = 48;
/// Samples walked per datagram. A 9000-byte datagram holds at most 450
/// samples (20 bytes each at the smallest), so no valid datagram reaches it.
pub const MAX_SAMPLES: u32 = 512;
/// Records walked per flow sample; real exporters send 1 to 5.
pub const MAX_RECORDS: u32 = 32;
/// Highest sampling rate accepted: 2^24 (OcNOS' maximum is 2^24 - 1).
pub const MAX_SAMPLING_RATE: u32 = 1 << 24;
/// `stripped` values above this are not believed (one vendor reports
/// frame_length - header_length there); the frame length is used as is.
pub const MAX_STRIPPED: u32 = 64;
/// Bytes of a sampled packet header that are parsed (sFlow's default header
/// is 128 bytes; OcNOS allows up to 256). Layers past them are not seen: a
/// transport header beyond byte 256 leaves the packet classed by its last
/// visible protocol.
pub const MAX_SAMPLED_HEADER: usize = 256;
/// VLAN tags (802.1Q / 802.1ad) walked inside a sampled header.
pub const MAX_VLAN_TAGS: usize = 4;
/// MPLS labels walked inside a sampled header.
pub const MAX_MPLS_LABELS: usize = 4;
/// IPv6 extension headers walked before giving up on the transport header.
pub const MAX_IPV6_EXT_HEADERS: usize = 4;
