use std::io::Write;

use anyhow::{Context, Result};
use bytes::buf::BufMut;
use bytes::{Bytes, BytesMut};
use flate2::write::GzEncoder;
use flate2::Compression;

use crate::protocol::buf::{ByteBuf, ByteBufMut};

use super::{Compressor, Decompressor};

/// Gzip compression algorithm. See [Kafka's broker configuration](https://kafka.apache.org/documentation/#brokerconfigs_compression.type)
/// for more information.
pub struct Gzip;

impl<B: ByteBufMut> Compressor<B> for Gzip {
    type BufMut = BytesMut;
    fn compress<R, F>(buf: &mut B, f: F) -> Result<R>
    where
        F: FnOnce(&mut Self::BufMut) -> Result<R>,
    {
        // Write uncompressed bytes into a temporary buffer
        let mut tmp = BytesMut::new();
        let res = f(&mut tmp)?;

        // Compress directly into the target buffer
        let mut e = GzEncoder::new(buf.writer(), Compression::default());
        e.write_all(&tmp).context("Failed to compress gzip")?;
        e.finish().context("Failed to compress gzip")?;

        Ok(res)
    }
}

impl<B: ByteBuf> Decompressor<B> for Gzip {
    type Buf = Bytes;
    fn decompress<R, F>(buf: &mut B, f: F) -> Result<R>
    where
        F: FnOnce(&mut Self::Buf) -> Result<R>,
    {
        // Metrobus patch: read through a limit instead of writing it all.
        let mut tmp = BytesMut::new().writer();
        let input = buf.copy_to_bytes(buf.remaining());
        let decoder = flate2::read::GzDecoder::new(bytes::Buf::reader(input));
        std::io::copy(
            &mut std::io::Read::take(decoder, super::MAX_DECOMPRESSED_BYTES as u64 + 1),
            &mut tmp,
        )
        .context("Failed to decompress gzip")?;
        let tmp = tmp.into_inner();
        super::check_decompressed_size(tmp.len())?;

        f(&mut tmp.into())
    }
}
