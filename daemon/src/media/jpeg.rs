//! A tiny JPEG header reader: enough to check what `jpegenc` produced (SOI, EOI, and the
//! frame size from the first SOFn segment).

/// What the frame header of a JPEG says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JpegHeader {
    /// The SOF marker's second byte: 0xC0 baseline, 0xC2 progressive, ...
    pub sof_marker: u8,
    pub width: u16,
    pub height: u16,
    pub components: u8,
}

/// Parse the markers up to the first SOFn. `None` if `data` is not a well-formed JPEG start
/// (no SOI, truncated segment, no SOF before the scan) or does not end with EOI.
pub fn parse_header(data: &[u8]) -> Option<JpegHeader> {
    if !data.starts_with(&[0xFF, 0xD8]) || !data.ends_with(&[0xFF, 0xD9]) {
        return None;
    }
    let mut pos = 2;
    loop {
        // Markers may be preceded by fill bytes (0xFF).
        while *data.get(pos)? == 0xFF && *data.get(pos + 1)? == 0xFF {
            pos += 1;
        }
        if *data.get(pos)? != 0xFF {
            return None;
        }
        let marker = *data.get(pos + 1)?;
        pos += 2;
        match marker {
            // Standalone markers without a length.
            0x01 | 0xD0..=0xD7 => continue,
            // Start of scan or end of image before any frame header.
            0xDA | 0xD9 => return None,
            _ => {}
        }
        let len = usize::from(u16::from_be_bytes([*data.get(pos)?, *data.get(pos + 1)?]));
        if len < 2 {
            return None;
        }
        let segment = data.get(pos + 2..pos + len)?;
        // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
        if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            // precision(1) height(2) width(2) components(1)
            let height = u16::from_be_bytes([*segment.get(1)?, *segment.get(2)?]);
            let width = u16::from_be_bytes([*segment.get(3)?, *segment.get(4)?]);
            let components = *segment.get(5)?;
            return Some(JpegHeader {
                sof_marker: marker,
                width,
                height,
                components,
            });
        }
        pos += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_minimal_sof0() {
        let mut data = vec![0xFF, 0xD8];
        data.extend([0xFF, 0xE0, 0x00, 0x04, 0xAA, 0xBB]); // APP0, 2 payload bytes
        data.extend([
            0xFF, 0xC0, 0x00, 0x0B, 8, 0x01, 0x68, 0x02, 0x80, 3, 1, 0x22, 0,
        ]);
        data.extend([0xFF, 0xD9]);
        let header = parse_header(&data).expect("header");
        assert_eq!(
            header,
            JpegHeader {
                sof_marker: 0xC0,
                width: 640,
                height: 360,
                components: 3
            }
        );
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse_header(&[]), None);
        assert_eq!(parse_header(&[0xFF, 0xD8, 0xFF, 0xD9]), None);
        assert_eq!(
            parse_header(&[0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0xFF, 0xD9]),
            None
        );
        assert_eq!(parse_header(&[0xFF, 0xD8, 0x12, 0x34, 0xFF, 0xD9]), None);
    }
}
