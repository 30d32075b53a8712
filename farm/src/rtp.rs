//! RTP packetization of H.264 (RFC 6184) into RTSP interleaved frames (RFC 2326 §10.12).
//!
//! NAL units up to [`MAX_PAYLOAD`] bytes go as single-NAL packets, larger ones as FU-A
//! fragments; the marker bit is set on the last packet of an access unit. Packets are
//! appended to a caller-owned output buffer (reused across frames), so sending a frame
//! allocates nothing: payload bytes are copied once from the shared clip into that buffer.

/// RTP payload type announced in the SDP.
pub const PAYLOAD_TYPE: u8 = 96;
/// RTP clock rate for video.
pub const CLOCK_RATE: u32 = 90_000;
/// Largest RTP payload (keeps packets under a 1500-byte MTU with IP/TCP/RTP headers).
pub const MAX_PAYLOAD: usize = 1400;

const FU_A: u8 = 28;

/// Per-session RTP state: SSRC and next sequence number.
#[derive(Debug, Clone)]
pub struct RtpSender {
    /// Interleaved channel for RTP.
    pub channel: u8,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Sequence number of the next packet.
    pub seq: u16,
    /// RTP packets sent (for RTCP sender reports; wraps).
    pub packets: u32,
    /// RTP payload bytes sent (for RTCP sender reports; wraps).
    pub octets: u32,
}

impl RtpSender {
    /// A sender with a random SSRC and starting sequence number.
    pub fn new(channel: u8) -> Self {
        RtpSender {
            channel,
            ssrc: rand::random(),
            seq: rand::random(),
            packets: 0,
            octets: 0,
        }
    }

    fn packet_header(&mut self, out: &mut Vec<u8>, payload_len: usize, marker: bool, ts: u32) {
        let len = (12 + payload_len) as u16; // payload_len <= MAX_PAYLOAD + 2
        out.extend_from_slice(&[b'$', self.channel]);
        out.extend_from_slice(&len.to_be_bytes());
        out.push(0x80); // V=2, no padding, no extension, no CSRC
        out.push(PAYLOAD_TYPE | if marker { 0x80 } else { 0 });
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&ts.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        self.seq = self.seq.wrapping_add(1);
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload_len as u32);
    }

    /// Appends an RTCP sender report (RFC 3550 §6.4.1) on the RTCP channel (`channel + 1`)
    /// mapping RTP timestamp `ts` to wall-clock time `now`.
    pub fn push_sender_report(&self, out: &mut Vec<u8>, ts: u32, now: std::time::SystemTime) {
        const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
        let since = now
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let secs = (since.as_secs() + NTP_UNIX_OFFSET) as u32; // NTP era wraps in 2036
        let frac = ((u64::from(since.subsec_nanos()) << 32) / 1_000_000_000) as u32;
        out.extend_from_slice(&[b'$', self.channel.wrapping_add(1), 0, 28]);
        out.extend_from_slice(&[0x80, 200, 0, 6]); // V=2, RC=0, PT=SR, length 7 words - 1
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&secs.to_be_bytes());
        out.extend_from_slice(&frac.to_be_bytes());
        out.extend_from_slice(&ts.to_be_bytes());
        out.extend_from_slice(&self.packets.to_be_bytes());
        out.extend_from_slice(&self.octets.to_be_bytes());
    }

    /// Appends all packets of one NAL unit (header byte included) to `out`.
    /// `last` marks the final NAL unit of the access unit.
    pub fn push_nal(&mut self, out: &mut Vec<u8>, nal: &[u8], ts: u32, last: bool) {
        let mut packets = NalPackets::new(nal, ts, last);
        while packets.write_next(self, out) {}
    }

    /// Appends one interleaved frame of `len` random bytes (RTP version bits cleared, so it
    /// is never valid RTP) to `out`.
    pub fn push_garbage(&mut self, out: &mut Vec<u8>, len: usize) {
        let len = len.clamp(1, MAX_PAYLOAD);
        out.extend_from_slice(&[b'$', self.channel]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        let start = out.len();
        out.resize(start + len, 0);
        rand::fill(&mut out[start..]);
        out[start] &= 0x3f;
    }
}

/// The packets of one NAL unit, written one at a time so the caller can flush its buffer
/// between them (a keyframe NAL can be tens of kilobytes).
#[derive(Debug)]
pub struct NalPackets<'a> {
    nal: &'a [u8],
    /// Bytes of the NAL body (after the header byte) already sent; `None` before the first.
    pos: Option<usize>,
    ts: u32,
    last: bool,
}

impl<'a> NalPackets<'a> {
    /// Packets for `nal` at timestamp `ts`; `last` if it ends the access unit.
    pub fn new(nal: &'a [u8], ts: u32, last: bool) -> Self {
        NalPackets {
            nal,
            pos: None,
            ts,
            last,
        }
    }

    /// Appends the next packet to `out`; `false` when there are none left.
    pub fn write_next(&mut self, rtp: &mut RtpSender, out: &mut Vec<u8>) -> bool {
        let Some((&hdr, body)) = self.nal.split_first() else {
            return false;
        };
        if self.nal.len() <= MAX_PAYLOAD {
            if self.pos.is_some() {
                return false;
            }
            self.pos = Some(body.len());
            rtp.packet_header(out, self.nal.len(), self.last, self.ts);
            out.extend_from_slice(self.nal);
            return true;
        }
        let pos = self.pos.unwrap_or(0);
        if pos >= body.len() {
            return false;
        }
        let end = (pos + MAX_PAYLOAD - 2).min(body.len());
        let is_end = end == body.len();
        rtp.packet_header(out, end - pos + 2, self.last && is_end, self.ts);
        let start_bit = if pos == 0 { 0x80 } else { 0 };
        let end_bit = if is_end { 0x40 } else { 0 };
        out.push((hdr & 0xe0) | FU_A);
        out.push((hdr & 0x1f) | start_bit | end_bit);
        out.extend_from_slice(&body[pos..end]);
        self.pos = Some(end);
        true
    }
}

/// The RTP timestamp `frame` frames after `base` at `fps`.
pub fn timestamp(base: u32, frame: u64, fps: u32) -> u32 {
    let ticks = frame * u64::from(CLOCK_RATE) / u64::from(fps.max(1));
    base.wrapping_add(ticks as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses interleaved RTP back: (marker, seq, ts, payload) per packet.
    fn unpack(mut b: &[u8]) -> Vec<(bool, u16, u32, Vec<u8>)> {
        let mut out = Vec::new();
        while !b.is_empty() {
            assert_eq!(b[0], b'$');
            let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
            let p = &b[4..4 + len];
            assert_eq!(p[0] >> 6, 2);
            assert_eq!(p[1] & 0x7f, PAYLOAD_TYPE);
            out.push((
                p[1] & 0x80 != 0,
                u16::from_be_bytes([p[2], p[3]]),
                u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
                p[12..].to_vec(),
            ));
            b = &b[4 + len..];
        }
        out
    }

    #[test]
    fn small_nals_are_single_packets_with_marker_on_last() {
        let mut s = RtpSender::new(0);
        s.seq = u16::MAX;
        let mut out = Vec::new();
        s.push_nal(&mut out, &[0x67, 1, 2], 1000, false);
        s.push_nal(&mut out, &[0x65, 3], 1000, true);
        let p = unpack(&out);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].0, p[0].1, p[0].2), (false, u16::MAX, 1000));
        assert_eq!((p[1].0, p[1].1), (true, 0));
        assert_eq!(p[1].3, vec![0x65, 3]);
    }

    #[test]
    fn large_nal_is_fu_a_and_reassembles() {
        let nal: Vec<u8> = std::iter::once(0x65)
            .chain((0..5000u32).map(|i| i as u8))
            .collect();
        let mut s = RtpSender::new(2);
        let mut out = Vec::new();
        s.push_nal(&mut out, &nal, 7, true);
        let p = unpack(&out);
        assert_eq!(p.len(), 5000usize.div_ceil(MAX_PAYLOAD - 2));
        let mut re = vec![(p[0].3[0] & 0xe0) | (p[0].3[1] & 0x1f)];
        for (i, (marker, _, _, payload)) in p.iter().enumerate() {
            assert_eq!(payload[0] & 0x1f, FU_A);
            assert_eq!(payload[1] & 0x80 != 0, i == 0, "start bit");
            assert_eq!(payload[1] & 0x40 != 0, i + 1 == p.len(), "end bit");
            assert_eq!(*marker, i + 1 == p.len());
            assert!(payload.len() <= MAX_PAYLOAD);
            re.extend_from_slice(&payload[2..]);
        }
        assert_eq!(re, nal);
    }

    #[test]
    fn garbage_is_never_rtp() {
        let mut s = RtpSender::new(0);
        for _ in 0..100 {
            let mut out = Vec::new();
            s.push_garbage(&mut out, 200);
            assert_eq!(out.len(), 204);
            assert_ne!(out[4] >> 6, 2);
        }
    }

    #[test]
    fn sender_report_layout() {
        let mut s = RtpSender::new(4);
        s.push_nal(&mut Vec::new(), &[0x65, 1, 2], 0, true);
        let mut out = Vec::new();
        s.push_sender_report(&mut out, 1234, std::time::UNIX_EPOCH);
        assert_eq!(out.len(), 32);
        assert_eq!(&out[..8], &[b'$', 5, 0, 28, 0x80, 200, 0, 6]);
        assert_eq!(&out[8..12], &s.ssrc.to_be_bytes());
        assert_eq!(&out[12..16], &2_208_988_800u32.to_be_bytes());
        assert_eq!(&out[20..24], &1234u32.to_be_bytes());
        assert_eq!(&out[24..28], &1u32.to_be_bytes());
        assert_eq!(&out[28..32], &3u32.to_be_bytes());
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(0, 15, 15), 90_000);
        assert_eq!(timestamp(u32::MAX, 1, 30), 2999);
        assert_eq!(timestamp(0, 7, 7), 90_000);
    }
}
