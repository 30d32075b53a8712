//! Annex B byte streams: split into NAL units and check that a keyframe is complete
//! (parameter sets and a picture) before handing it to GStreamer. Input is untrusted.

use super::{Codec, MediaError};

/// NAL unit payloads (header byte first, start codes stripped) of an Annex B stream.
/// Bytes before the first start code are ignored.
pub fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut pos = next_start_code(data, 0).map(|(_, end)| end);
    std::iter::from_fn(move || {
        let start = pos?;
        match next_start_code(data, start) {
            Some((code_start, code_end)) => {
                pos = Some(code_end);
                Some(trim_trailing_zeros(&data[start..code_start]))
            }
            None => {
                pos = None;
                Some(&data[start..])
            }
        }
    })
    .filter(|nal| !nal.is_empty())
}

/// The first `00 00 01` at or after `from`: (index of its first byte, index after it).
fn next_start_code(data: &[u8], from: usize) -> Option<(usize, usize)> {
    let tail = data.get(from..)?;
    tail.windows(3)
        .position(|w| w == [0, 0, 1])
        .map(|i| (from + i, from + i + 3))
}

/// A four-byte start code leaves a zero at the end of the previous NAL; strip it.
fn trim_trailing_zeros(nal: &[u8]) -> &[u8] {
    let end = nal.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &nal[..end]
}

/// The NAL unit type from the header byte(s).
pub fn nal_type(codec: Codec, nal: &[u8]) -> Option<u8> {
    let first = *nal.first()?;
    Some(match codec {
        Codec::H264 => first & 0x1f,
        Codec::H265 => (first >> 1) & 0x3f,
    })
}

/// Check that `keyframe` has the parameter sets and a coded picture of `codec`.
/// Stops scanning as soon as all are seen (parameter sets come first, so a keyframe of
/// hundreds of kilobytes costs a few header reads, not a scan of the picture).
pub fn check_keyframe(codec: Codec, keyframe: &[u8]) -> Result<(), MediaError> {
    if keyframe.is_empty() {
        return Err(MediaError::Decode("empty keyframe".into()));
    }
    // H.264: SPS 7, PPS 8, slices 1..=5. H.265: VPS 32, SPS 33, PPS 34, VCL 0..=31.
    let (mut vps, mut sps, mut pps, mut picture) = (codec == Codec::H264, false, false, false);
    let mut any = false;
    let mut from = 0;
    while let Some((_, header)) = next_start_code(keyframe, from) {
        from = header;
        any = true;
        let Some(nal) = keyframe.get(header..) else {
            break;
        };
        match (codec, nal_type(codec, nal)) {
            (Codec::H264, Some(7)) | (Codec::H265, Some(33)) => sps = true,
            (Codec::H264, Some(8)) | (Codec::H265, Some(34)) => pps = true,
            (Codec::H265, Some(32)) => vps = true,
            (Codec::H264, Some(1..=5)) | (Codec::H265, Some(0..=31)) => picture = true,
            _ => {}
        }
        if vps && sps && pps && picture {
            return Ok(());
        }
    }
    if !any {
        return Err(MediaError::Decode("no Annex B start code".into()));
    }
    let missing: Vec<&str> = [
        (vps, "VPS"),
        (sps, "SPS"),
        (pps, "PPS"),
        (picture, "picture"),
    ]
    .into_iter()
    .filter(|(present, _)| !present)
    .map(|(_, name)| name)
    .collect();
    Err(MediaError::Decode(format!(
        "{codec} keyframe without {}",
        missing.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let data = [
            9, 9, 0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4,
        ];
        let nals: Vec<&[u8]> = nal_units(&data).collect();
        assert_eq!(
            nals,
            vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4][..]]
        );
    }

    #[test]
    fn checks_parameter_sets() {
        let full = [0, 0, 0, 1, 0x67, 1, 0, 0, 1, 0x68, 2, 0, 0, 1, 0x65, 3];
        assert!(check_keyframe(Codec::H264, &full).is_ok());
        let no_pps = [0, 0, 0, 1, 0x67, 1, 0, 0, 1, 0x65, 3];
        assert_eq!(
            check_keyframe(Codec::H264, &no_pps),
            Err(MediaError::Decode("h264 keyframe without PPS".into()))
        );
        assert!(check_keyframe(Codec::H264, &[]).is_err());
        assert!(check_keyframe(Codec::H264, &[1, 2, 3, 4]).is_err());
        assert!(check_keyframe(Codec::H265, &[0, 0, 1]).is_err());
        // H.265 needs a VPS too.
        let h265_no_vps = [
            0,
            0,
            1,
            33 << 1,
            1,
            0,
            0,
            1,
            34 << 1,
            1,
            0,
            0,
            1,
            19 << 1,
            1,
        ];
        assert!(check_keyframe(Codec::H265, &h265_no_vps).is_err());
    }

    #[test]
    fn warmup_assets_are_complete() {
        for codec in Codec::ALL {
            check_keyframe(codec, &super::super::warmup_keyframe(codec)).expect("asset");
        }
    }
}
