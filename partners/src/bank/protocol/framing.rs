//! Framing on the bank link: each packed message behind a 2-byte big-endian
//! length.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame the 2-byte header can announce.
pub const MAX_FRAME_BYTES: usize = u16::MAX as usize;

/// Reads one frame. `Ok(None)` on a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0_u8; 2];
    match reader.read_exact(&mut header).await {
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let len = usize::from(u16::from_be_bytes(header));
    if len == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "empty frame"));
    }
    let mut frame = vec![0_u8; len];
    reader.read_exact(&mut frame).await?;
    Ok(Some(frame))
}

/// Writes one frame and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, frame: &[u8]) -> io::Result<()> {
    let len = u16::try_from(frame.len()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "message longer than 65535 bytes",
        )
    })?;
    let mut buffer = Vec::with_capacity(frame.len() + 2);
    buffer.extend_from_slice(&len.to_be_bytes());
    buffer.extend_from_slice(frame);
    writer.write_all(&buffer).await?;
    writer.flush().await
}
