//! The standard benchmark links of `ARCHITECTURE.md` ("Testing over an emulated WAN") and the
//! emulator settings derived from them.
//!
//! Main exports: [`Preset`] and its [`PresetLink`] values. The table gives the round-trip time,
//! the rate and the loss of each link; this module adds what the emulator needs on top of it:
//! the device MTU and the default queue limit (see [`default_queue_limit_bytes`]).

use std::fmt;
use std::time::Duration;

/// A named standard link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// Plain loopback (0.5 ms RTT, unlimited): needs no emulator and is rejected by `up`.
    Dc,
    /// 10 ms RTT, 1 Gbit/s, no loss.
    Metro,
    /// 50 ms RTT, 200 Mbit/s, 0.1 % loss.
    Continent,
    /// 150 ms RTT, 100 Mbit/s, 0.5 % loss.
    Intercontinental,
    /// 80 ms RTT, 20 Mbit/s, 1 % loss.
    Edge,
}

/// The parameters of one emulated preset.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PresetLink {
    /// Round-trip time of the link; each direction gets half of it as one-way delay.
    pub rtt: Duration,
    /// Rate of each direction, in bit/s.
    pub rate_bps: u64,
    /// Loss of each direction, in percent of packets (independent per packet).
    pub loss_pct: f64,
    /// MTU of the TUN devices, in bytes.
    pub mtu: u32,
}

/// MTU used by the WAN presets: a WAN path carries standard Ethernet-sized packets.
pub const WAN_MTU: u32 = 1500;

/// MTU used by `metro`: a metro link between data centres is assumed to carry jumbo frames, which
/// also keeps the forwarder's packet rate at 1 Gbit/s near 14 000 packets per second.
pub const JUMBO_MTU: u32 = 9000;

/// The queue never holds fewer than this many full-size packets by default.
pub const MIN_QUEUE_PACKETS: u64 = 100;

impl Preset {
    /// Every preset, in table order.
    pub const ALL: [Self; 5] = [
        Self::Dc,
        Self::Metro,
        Self::Continent,
        Self::Intercontinental,
        Self::Edge,
    ];

    /// The emulated link, or `None` for `dc`, which is plain loopback.
    pub fn link(self) -> Option<PresetLink> {
        let (rtt_ms, rate_mbit, loss_pct, mtu) = match self {
            Self::Dc => return None,
            Self::Metro => (10, 1000, 0.0, JUMBO_MTU),
            Self::Continent => (50, 200, 0.1, WAN_MTU),
            Self::Intercontinental => (150, 100, 0.5, WAN_MTU),
            Self::Edge => (80, 20, 1.0, WAN_MTU),
        };
        Some(PresetLink {
            rtt: Duration::from_millis(rtt_ms),
            rate_bps: rate_mbit * 1_000_000,
            loss_pct,
            mtu,
        })
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Dc => "dc",
            Self::Metro => "metro",
            Self::Continent => "continent",
            Self::Intercontinental => "intercontinental",
            Self::Edge => "edge",
        })
    }
}

/// Default tail-drop limit of one direction's queue, in bytes: one bandwidth-delay product
/// (`rate × RTT`), but never less than [`MIN_QUEUE_PACKETS`] packets of `mtu` bytes.
///
/// One BDP of buffer lets a single loss-based TCP flow keep the link full after it halves its
/// window; the packet floor keeps short, slow links from dropping every burst.
pub fn default_queue_limit_bytes(rate_bps: u64, rtt: Duration, mtu: u32) -> u64 {
    let bdp_bits = u128::from(rate_bps) * rtt.as_nanos() / 1_000_000_000;
    let bdp = u64::try_from(bdp_bits / 8).unwrap_or(u64::MAX);
    bdp.max(MIN_QUEUE_PACKETS * u64::from(mtu))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dc_has_no_emulated_link() {
        assert_eq!(Preset::Dc.link(), None);
    }

    #[test]
    fn presets_match_the_architecture_table() {
        let metro = Preset::Metro.link().unwrap();
        assert_eq!(metro.rtt, Duration::from_millis(10));
        assert_eq!(metro.rate_bps, 1_000_000_000);
        assert_eq!(metro.loss_pct, 0.0);
        let edge = Preset::Edge.link().unwrap();
        assert_eq!(edge.rtt, Duration::from_millis(80));
        assert_eq!(edge.rate_bps, 20_000_000);
        assert_eq!(edge.loss_pct, 1.0);
    }

    #[test]
    fn queue_limit_is_one_bdp_with_a_packet_floor() {
        // metro: 1 Gbit/s × 10 ms = 1.25 MB.
        assert_eq!(
            default_queue_limit_bytes(1_000_000_000, Duration::from_millis(10), 9000),
            1_250_000
        );
        // edge: 20 Mbit/s × 80 ms = 200 kB, above 100 × 1500.
        assert_eq!(
            default_queue_limit_bytes(20_000_000, Duration::from_millis(80), 1500),
            200_000
        );
        // 1 Mbit/s × 10 ms = 1250 B is below the floor of 100 packets.
        assert_eq!(
            default_queue_limit_bytes(1_000_000, Duration::from_millis(10), 1500),
            150_000
        );
    }
}
