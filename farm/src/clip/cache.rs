//! The clip cache: encoded clips in memory (shared `Arc<Clip>`) and on disk.
//!
//! On disk a clip is `<dir>/<spec key>.bin` in a small length-prefixed format. Files are
//! written to a unique temporary name and renamed into place, so tests running in parallel
//! never read a half-written clip; two processes encoding the same clip at once is harmless
//! (the last rename wins, and both files are identical in meaning). A file that does not
//! parse is re-encoded and replaced.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};

use super::{encode, Clip, ClipSpec, Frame};
use crate::FarmError;

const MAGIC: &[u8; 8] = b"GSFCLIP1";

/// Clips by spec, in memory and under a directory.
#[derive(Debug)]
pub struct ClipCache {
    dir: PathBuf,
    mem: Mutex<HashMap<ClipSpec, Arc<Clip>>>,
}

impl ClipCache {
    /// The default directory: `$TMPDIR/gridsight-farm-clips`.
    pub fn default_dir() -> PathBuf {
        std::env::temp_dir().join("gridsight-farm-clips")
    }

    /// A cache under `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ClipCache {
            dir: dir.into(),
            mem: Mutex::new(HashMap::new()),
        }
    }

    /// The directory of this cache.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The clip for `spec`: from memory, else from disk, else encoded now and saved.
    /// Blocking (encoding takes up to a second or two).
    pub fn get(&self, spec: &ClipSpec) -> Result<Arc<Clip>, FarmError> {
        if let Some(clip) = self.lock().get(spec) {
            return Ok(clip.clone());
        }
        let path = self.dir.join(format!("{}.bin", spec.key()));
        let clip = match load(&path, spec) {
            Ok(clip) => clip,
            Err(_) => {
                let clip = encode::encode(spec)?;
                save(&self.dir, &path, &clip)?;
                clip
            }
        };
        let clip = Arc::new(clip);
        Ok(self.lock().entry(*spec).or_insert(clip).clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClipSpec, Arc<Clip>>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.mem.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Serialises a clip.
pub fn to_bytes(clip: &Clip) -> Bytes {
    let mut b = BytesMut::with_capacity(64 + clip.frames.iter().map(Frame::size).sum::<usize>());
    b.put_slice(MAGIC);
    put_bytes(&mut b, &clip.sps);
    put_bytes(&mut b, &clip.pps);
    b.put_u32_le(clip.frames.len() as u32);
    for f in &clip.frames {
        b.put_u8(u8::from(f.keyframe));
        b.put_u32_le(f.nals.len() as u32);
        for nal in &f.nals {
            put_bytes(&mut b, nal);
        }
    }
    b.freeze()
}

/// Parses a serialised clip; NAL units share `data`. `None` if it is malformed.
pub fn from_bytes(mut data: Bytes, spec: &ClipSpec) -> Option<Clip> {
    if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
        return None;
    }
    data.advance(MAGIC.len());
    let sps = get_bytes(&mut data)?;
    let pps = get_bytes(&mut data)?;
    let n = get_u32(&mut data)? as usize;
    let mut frames = Vec::with_capacity(n.min(100_000));
    for _ in 0..n {
        if data.is_empty() {
            return None;
        }
        let keyframe = data.get_u8() != 0;
        let nnals = get_u32(&mut data)? as usize;
        let mut nals = Vec::with_capacity(nnals.min(1024));
        for _ in 0..nnals {
            nals.push(get_bytes(&mut data)?);
        }
        frames.push(Frame { nals, keyframe });
    }
    let clip = Clip {
        spec: *spec,
        sps,
        pps,
        frames,
    };
    (data.is_empty() && clip.validate().is_ok()).then_some(clip)
}

fn put_bytes(b: &mut BytesMut, data: &[u8]) {
    b.put_u32_le(data.len() as u32);
    b.put_slice(data);
}

fn get_u32(data: &mut Bytes) -> Option<u32> {
    (data.len() >= 4).then(|| data.get_u32_le())
}

fn get_bytes(data: &mut Bytes) -> Option<Bytes> {
    let len = get_u32(data)? as usize;
    (data.len() >= len).then(|| data.split_to(len))
}

fn load(path: &Path, spec: &ClipSpec) -> Result<Clip, FarmError> {
    let data = std::fs::read(path).map_err(|source| FarmError::Cache {
        path: path.to_owned(),
        source,
    })?;
    from_bytes(Bytes::from(data), spec).ok_or_else(|| FarmError::CorruptCache(path.to_owned()))
}

fn save(dir: &Path, path: &Path, clip: &Clip) -> Result<(), FarmError> {
    let io = |source| FarmError::Cache {
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = path.with_extension(format!(
        "tmp.{}.{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&to_bytes(clip))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clip::Content;

    fn sample() -> Clip {
        let spec = ClipSpec::new(Content::Still, 64, 64, 5);
        Clip {
            spec,
            sps: Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1e]),
            pps: Bytes::from_static(&[0x68, 0xce]),
            frames: vec![
                Frame {
                    nals: vec![Bytes::from_static(&[0x65, 1, 2, 3])],
                    keyframe: true,
                },
                Frame {
                    nals: vec![
                        Bytes::from_static(&[0x41, 9]),
                        Bytes::from_static(&[0x41, 8]),
                    ],
                    keyframe: false,
                },
            ],
        }
    }

    #[test]
    fn round_trips() {
        let clip = sample();
        let back = from_bytes(to_bytes(&clip), &clip.spec).expect("parses");
        assert_eq!(back.sps, clip.sps);
        assert_eq!(back.frames.len(), 2);
        assert_eq!(back.frames[1].nals[1], clip.frames[1].nals[1]);
        assert!(back.frames[0].keyframe && !back.frames[1].keyframe);
    }

    #[test]
    fn rejects_truncated_and_trailing() {
        let clip = sample();
        let data = to_bytes(&clip);
        for cut in 0..data.len() {
            assert!(
                from_bytes(data.slice(..cut), &clip.spec).is_none(),
                "cut {cut}"
            );
        }
        let mut longer = BytesMut::from(&data[..]);
        longer.put_u8(0);
        assert!(from_bytes(longer.freeze(), &clip.spec).is_none());
    }
}
