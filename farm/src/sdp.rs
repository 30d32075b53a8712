//! The session description (SDP, RFC 4566) a mount answers DESCRIBE with: one H.264 video
//! stream, payload type 96, 90 kHz clock, parameter sets from the clip.

use crate::clip::Clip;
use crate::rtp::{CLOCK_RATE, PAYLOAD_TYPE};

/// The control suffix of the single video track (`a=control:trackID=0`).
pub const TRACK_CONTROL: &str = "trackID=0";

/// SDP for a mount serving `clip` at `fps`.
pub fn describe(mount: &str, clip: &Clip, fps: u32, session_version: u64) -> String {
    format!(
        "v=0\r\n\
         o=- {session_version} 1 IN IP4 127.0.0.1\r\n\
         s=gridsight camera farm {mount}\r\n\
         c=IN IP4 0.0.0.0\r\n\
         t=0 0\r\n\
         a=tool:gridsight-farm\r\n\
         a=range:npt=0-\r\n\
         a=control:*\r\n\
         m=video 0 RTP/AVP {PAYLOAD_TYPE}\r\n\
         a=rtpmap:{PAYLOAD_TYPE} H264/{CLOCK_RATE}\r\n\
         a=fmtp:{PAYLOAD_TYPE} packetization-mode=1;profile-level-id={pli};sprop-parameter-sets={sprop}\r\n\
         a=framerate:{fps}\r\n\
         a=control:{TRACK_CONTROL}\r\n",
        pli = clip.profile_level_id(),
        sprop = clip.sprop_parameter_sets(),
    )
}
