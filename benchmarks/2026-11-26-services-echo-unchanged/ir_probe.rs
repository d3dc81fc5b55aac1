// Instruction-count probe (not committed): the connection_path bench's fast and slow paths,
// a fixed number of iterations, for `valgrind --tool=callgrind`.
use std::io::{self, Read, Write};
use echoloop::connection::{Connection, Limits, NoPipe, Readiness, Stream};
struct MemoryStream { message: Vec<u8>, readable: bool, accept: usize, taken: usize }
impl Read for MemoryStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.readable { return Err(io::ErrorKind::WouldBlock.into()); }
        self.readable = false;
        let n = self.message.len().min(buf.len());
        buf[..n].copy_from_slice(&self.message[..n]);
        Ok(n)
    }
}
impl Write for MemoryStream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.accept - self.taken;
        if room == 0 { return Err(io::ErrorKind::WouldBlock.into()); }
        let n = data.len().min(room); self.taken += n; Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> { Ok(()) }
}
impl Stream for MemoryStream { fn shutdown_write(&mut self) -> io::Result<()> { Ok(()) } }
fn main() {
    let mode = std::env::args().nth(1).unwrap();
    let size: usize = std::env::args().nth(2).unwrap().parse().unwrap();
    let limits = Limits { high_water: 32 << 20, low_water: 8 << 20, read_budget: 256 << 10, write_budget: 256 << 10 };
    let mut scratch = vec![0u8; 256 << 10];
    let mut io = MemoryStream { message: vec![0x42; size], readable: false, accept: 0, taken: 0 };
    let mut conn = Connection::<NoPipe>::new();
    let mut total = 0;
    for _ in 0..100_000 {
        if mode == "fast" {
            io.readable = true; io.accept = usize::MAX; io.taken = 0;
            conn.on_readiness(Readiness::READABLE | Readiness::WRITABLE);
            total += std::hint::black_box(conn.drive(&mut io, &mut scratch, &limits)).bytes_written;
        } else {
            io.readable = true; io.accept = size / 2; io.taken = 0;
            conn.on_readiness(Readiness::READABLE | Readiness::WRITABLE);
            conn.drive(&mut io, &mut scratch, &limits);
            io.accept = usize::MAX;
            conn.on_readiness(Readiness::WRITABLE);
            total += std::hint::black_box(conn.drive(&mut io, &mut scratch, &limits)).bytes_written;
        }
    }
    println!("{total}");
}
