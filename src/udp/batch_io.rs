//! Datagram socket I/O in batches: `recvmmsg(2)` reads up to [`BATCH`] datagrams in one
//! syscall and `sendmmsg(2)` sends up to [`BATCH`] replies in one, through `nix`'s safe
//! wrappers. On a wildcard bind each datagram also brings its real destination
//! (`IP_PKTINFO` / `IPV6_PKTINFO`), and each reply carries the same control message back so
//! it leaves from the address the request was sent to.
//!
//! Only this file touches the socket; what to answer, and whether, is decided elsewhere
//! (`guard`, the service). The caller handles partial sends: [`SendBatch::send`] reports how
//! many replies the kernel took, and the next call starts after them.
//!
//! Buffer sizes: every slot holds [`SLOT`] bytes, so no datagram up to the UDP maximum (65,507
//! bytes over IPv4, 65,527 over IPv6) is ever truncated, and a truncation the kernel reports
//! anyway (`MSG_TRUNC`) is passed up, never echoed. The slots are one allocation of
//! `BATCH × 64 KiB` (2 MiB), of which only the pages that datagrams touch become resident.
//! Measured (`VmRSS`, release build): +196 KiB after 100,000 echoes of 64 bytes from 50
//! sockets, +676 KiB after 160 datagrams of 65,507 bytes (one datagram at a time, before:
//! +0 and +60 KiB); bounded by the 2 MiB whatever arrives. Small slots with a fallback would
//! save that memory but cannot work: a datagram cut by `recvmmsg` is gone.

use std::cell::RefCell;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd};

use nix::libc;
use nix::sys::socket::{
    self, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders,
    SockaddrStorage,
};

/// Datagrams per `recvmmsg` and replies per `sendmmsg`.
pub(crate) const BATCH: usize = 32;
/// Bytes per receive slot: any UDP datagram fits whole.
pub(crate) const SLOT: usize = 65_536;

/// The local address (and for IPv6 the interface) a reply leaves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplySource {
    /// The address the request was sent to (canonical: never v4-mapped).
    pub(crate) ip: IpAddr,
    /// The interface it arrived on (IPv6 only: link-local replies need it; 0 lets routing pick).
    pub(crate) ifindex: u32,
}

/// One received datagram's metadata; its bytes are in the slot of the same index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Received {
    /// Payload length.
    pub(crate) len: usize,
    /// The sender, as the kernel reports it (v4-mapped on a dual-stack socket).
    pub(crate) peer: SocketAddr,
    /// The header's destination address (canonical), when pktinfo is on.
    pub(crate) destination: Option<IpAddr>,
    /// Where a reply should leave from, when pktinfo is on and the destination is unicast.
    pub(crate) reply_from: Option<ReplySource>,
    /// The kernel cut the datagram (`MSG_TRUNC`); cannot happen with [`SLOT`]-sized slots.
    pub(crate) truncated: bool,
}

/// One reply to send: the bytes, where to, and which local address it must leave from
/// (`None`: the socket's own address, or routing's choice on a wildcard bind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reply<'a> {
    /// The payload, sent whole as one datagram.
    pub(crate) bytes: &'a [u8],
    /// The destination.
    pub(crate) to: SocketAddr,
    /// The source address to send from.
    pub(crate) from: Option<ReplySource>,
}

impl Reply<'_> {
    /// A placeholder for fixed-size arrays of replies.
    pub(crate) const EMPTY: Reply<'static> = Reply {
        bytes: &[],
        to: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
        from: None,
    };
}

/// What one `sendmmsg` call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Sent {
    /// Replies the kernel took, from the front of the slice.
    pub(crate) count: usize,
    /// Of those, how many went out shorter than their payload (UDP sends are whole or not at
    /// all, so this is a safety net: such a reply counts as failed, not echoed).
    pub(crate) short: usize,
    /// Payload bytes of the replies that went out whole.
    pub(crate) bytes: u64,
}

/// Turns on `IP_PKTINFO` (IPv4 socket) or `IPV6_RECVPKTINFO` (IPv6 socket, which also covers
/// v4-mapped traffic on a dual-stack socket), so each datagram names its destination.
pub(crate) fn enable_pktinfo(socket: &impl AsFd, ipv6: bool) -> io::Result<()> {
    let result = match ipv6 {
        true => setsockopt(socket, sockopt::Ipv6RecvPacketInfo, &true),
        false => setsockopt(socket, sockopt::Ipv4PacketInfo, &true),
    };
    result.map_err(io::Error::from)
}

/// The room for control messages that a call's `mmsghdr` array has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    None,
    Pktinfo4,
    Pktinfo6,
}

impl Control {
    fn new(pktinfo: bool, ipv6: bool) -> Control {
        match (pktinfo, ipv6) {
            (false, _) => Control::None,
            (true, false) => Control::Pktinfo4,
            (true, true) => Control::Pktinfo6,
        }
    }
}

/// Receiving or sending (their headers are never shared: the kernel rewrites a received
/// header's address and control lengths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Recv,
    Send,
}

thread_local! {
    /// nix's `MultiHeaders` (the `mmsghdr` arrays) holds raw pointers, so it is not `Send`,
    /// while a [`crate::Server`] must be (an embedder runs it on a thread of their choice).
    /// The arrays therefore live here, per thread, made on first use for each direction, control
    /// room and address family: a reactor runs on one thread, so in practice once.
    static HEADERS: RefCell<[Option<MultiHeaders<SockaddrStorage>>; 12]> =
        RefCell::new(Default::default());
}

/// Runs `f` with this thread's headers for (`direction`, `control`, `ipv6`); `fresh` makes
/// them anew first.
fn with_headers<R>(
    direction: Direction,
    control: Control,
    ipv6: bool,
    fresh: bool,
    f: impl FnOnce(&mut MultiHeaders<SockaddrStorage>) -> R,
) -> R {
    let index = (direction as usize) * 6 + (control as usize) * 2 + usize::from(ipv6);
    HEADERS.with(|cache| {
        let mut cache = cache.borrow_mut();
        let slot = &mut cache[index];
        if fresh || slot.is_none() {
            let room = match control {
                Control::None => None,
                Control::Pktinfo4 => Some(nix::cmsg_space!(libc::in_pktinfo)),
                Control::Pktinfo6 => Some(nix::cmsg_space!(libc::in6_pktinfo)),
            };
            *slot = Some(MultiHeaders::preallocate(BATCH, room));
        }
        match slot {
            Some(headers) => f(headers),
            None => unreachable!("made just above"),
        }
    })
}

/// The receive side: slots and per-datagram metadata, allocated once.
#[derive(Debug)]
pub(crate) struct RecvBatch {
    slots: Box<[u8]>,
    received: Vec<Received>,
    pktinfo: bool,
    ipv6: bool,
    /// Make this thread's receive headers anew before the next call.
    fresh_headers: bool,
}

impl RecvBatch {
    /// Buffers for a socket of the given family; `pktinfo` when [`enable_pktinfo`] was called.
    pub(crate) fn new(pktinfo: bool, ipv6: bool) -> RecvBatch {
        RecvBatch {
            slots: vec![0; BATCH * SLOT].into_boxed_slice(),
            received: Vec::with_capacity(BATCH),
            pktinfo,
            ipv6,
            fresh_headers: false,
        }
    }

    /// Reads up to `max` (at most [`BATCH`]) datagrams in one `recvmmsg`; returns how many.
    /// `WouldBlock` when none is waiting.
    pub(crate) fn recv(&mut self, socket: &impl AsRawFd, max: usize) -> io::Result<usize> {
        let RecvBatch {
            slots,
            received,
            pktinfo,
            ipv6,
            fresh_headers,
        } = self;
        received.clear();
        let wanted = max.clamp(1, BATCH);
        let control = Control::new(*pktinfo, *ipv6);
        let lost_pktinfo =
            with_headers(Direction::Recv, control, *ipv6, *fresh_headers, |headers| {
                let mut chunks = slots.chunks_exact_mut(SLOT);
                let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
                    std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
                let results = socket::recvmmsg(
                    socket.as_raw_fd(),
                    headers,
                    iovs[..wanted].iter_mut(),
                    MsgFlags::empty(),
                    None,
                )?;
                let mut lost_pktinfo = false;
                for msg in results {
                    let Some(peer) = msg.address.as_ref().and_then(to_socket_addr) else {
                        continue; // not an IP datagram: nothing to answer
                    };
                    let (destination, reply_from) = match msg.cmsgs() {
                        Ok(cmsgs) => arrival(cmsgs),
                        Err(_) => (None, None), // MSG_CTRUNC
                    };
                    lost_pktinfo |= *pktinfo && destination.is_none();
                    received.push(Received {
                        len: msg.bytes,
                        peer,
                        destination,
                        reply_from,
                        truncated: msg.flags.contains(MsgFlags::MSG_TRUNC),
                    });
                }
                Ok::<bool, io::Error>(lost_pktinfo)
            })?;
        // The kernel shrinks each header's control length to what it wrote, and nix does not
        // restore it: after a datagram without pktinfo, that header would get none ever again.
        // Fresh headers restore the full length (rare: pktinfo comes with every datagram once
        // the option is on).
        *fresh_headers = lost_pktinfo;
        Ok(self.received.len())
    }

    /// The `index`th datagram of the last batch: its metadata and its bytes.
    pub(crate) fn datagram(&self, index: usize) -> Option<(&Received, &[u8])> {
        let meta = self.received.get(index)?;
        let start = index * SLOT;
        let bytes = self.slots.get(start..start + meta.len.min(SLOT))?;
        Some((meta, bytes))
    }
}

/// The destination and the reply source from a datagram's control messages.
fn arrival(cmsgs: socket::CmsgIterator<'_>) -> (Option<IpAddr>, Option<ReplySource>) {
    for cmsg in cmsgs {
        match cmsg {
            ControlMessageOwned::Ipv4PacketInfo(info) => {
                // `s_addr` holds the address in network byte order, as it sits in memory.
                let destination = IpAddr::from(info.ipi_addr.s_addr.to_ne_bytes());
                // ipi_spec_dst is the local address routing picked for this datagram: the
                // destination itself for unicast, the interface's address for a broadcast.
                let local = IpAddr::from(info.ipi_spec_dst.s_addr.to_ne_bytes());
                let from = (!local.is_unspecified()).then_some(ReplySource {
                    ip: local,
                    ifindex: 0,
                });
                return (Some(destination), from);
            }
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                let destination = Ipv6Addr::from(info.ipi6_addr.s6_addr).to_canonical();
                let unicast = !destination.is_multicast() && !destination.is_unspecified();
                let from = unicast.then_some(ReplySource {
                    ip: destination,
                    ifindex: info.ipi6_ifindex,
                });
                return (Some(destination), from);
            }
            _ => {}
        }
    }
    (None, None)
}

fn to_socket_addr(storage: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = storage.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    storage
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

/// The send side of a socket of one family.
#[derive(Debug)]
pub(crate) struct SendBatch {
    ipv6: bool,
    /// The destinations of the call being made (reused: a `sockaddr_storage` is 128 bytes,
    /// and most calls carry a few replies, not [`BATCH`]).
    addrs: Vec<Option<SockaddrStorage>>,
}

impl SendBatch {
    /// For a socket of the given family.
    pub(crate) fn new(ipv6: bool) -> SendBatch {
        SendBatch {
            ipv6,
            addrs: Vec::with_capacity(BATCH),
        }
    }

    /// Sends the longest prefix of `replies` that shares one source address (at most
    /// [`BATCH`]) in one `sendmmsg`. An error means the first of them was not sent (the
    /// kernel reports an error only when nothing went out); a count below the prefix's length
    /// means the next call will meet the error that stopped it.
    pub(crate) fn send(
        &mut self,
        socket: &impl AsRawFd,
        replies: &[Reply<'_>],
    ) -> io::Result<Sent> {
        let Some(first) = replies.first() else {
            return Ok(Sent::default());
        };
        // nix encodes one set of control messages for every message of a call, so a call
        // covers one run of replies from the same source (usually the whole batch).
        let run = replies
            .iter()
            .take(BATCH)
            .take_while(|reply| reply.from == first.from)
            .count();
        let replies = &replies[..run];
        let iovs: [[IoSlice<'_>; 1]; BATCH] =
            std::array::from_fn(|i| [IoSlice::new(replies.get(i).map_or(&[][..], |r| r.bytes))]);
        let ipv6 = self.ipv6;
        self.addrs.clear();
        self.addrs.extend(
            replies
                .iter()
                .map(|reply| Some(SockaddrStorage::from(destination(ipv6, reply.to)))),
        );
        let addrs = &self.addrs;
        // The control message must outlive the results (nix ties their lifetimes).
        let (info4, info6) = pktinfo(
            first
                .from
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |s| s.ip),
            first.from.map_or(0, |s| s.ifindex),
        );
        let control = match (first.from, self.ipv6) {
            (None, _) => None,
            (Some(_), true) => Some(ControlMessage::Ipv6PacketInfo(&info6)),
            (Some(source), false) if source.ip.is_ipv4() => {
                Some(ControlMessage::Ipv4PacketInfo(&info4))
            }
            // An IPv6 source on an IPv4 socket cannot be: send from the socket's own.
            (Some(_), false) => None,
        };
        let (room, controls) = match control {
            None => (Control::None, &[][..]),
            Some(ref control) if self.ipv6 => (Control::Pktinfo6, std::slice::from_ref(control)),
            Some(ref control) => (Control::Pktinfo4, std::slice::from_ref(control)),
        };
        with_headers(Direction::Send, room, self.ipv6, false, |headers| {
            let results = socket::sendmmsg(
                socket.as_raw_fd(),
                headers,
                iovs[..run].iter(),
                &addrs[..],
                controls,
                MsgFlags::empty(),
            )?;
            let mut sent = Sent::default();
            for (result, reply) in results.zip(replies) {
                sent.count += 1;
                if result.bytes == reply.bytes.len() {
                    sent.bytes += reply.bytes.len() as u64;
                } else {
                    sent.short += 1;
                }
            }
            Ok(sent)
        })
    }
}

/// Where to send `to` from a socket of the given family: a dual-stack (IPv6) socket reaches
/// IPv4 peers through their v4-mapped form.
fn destination(ipv6: bool, to: SocketAddr) -> SocketAddr {
    match (ipv6, to) {
        (true, SocketAddr::V4(v4)) => {
            SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
        }
        _ => to,
    }
}

/// The pktinfo structures that make a reply leave from `ip` (and, for IPv6, interface
/// `ifindex`): `IP_PKTINFO` sets only `ipi_spec_dst`, the source; routing picks the interface.
fn pktinfo(ip: IpAddr, ifindex: u32) -> (libc::in_pktinfo, libc::in6_pktinfo) {
    let v4 = match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    };
    let v6 = match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let info4 = libc::in_pktinfo {
        ipi_ifindex: 0,
        ipi_spec_dst: libc::in_addr {
            s_addr: u32::from_ne_bytes(v4.octets()),
        },
        ipi_addr: libc::in_addr { s_addr: 0 },
    };
    let info6 = libc::in6_pktinfo {
        ipi6_addr: libc::in6_addr {
            s6_addr: v6.octets(),
        },
        ipi6_ifindex: ifindex,
    };
    (info4, info6)
}

/// The machine's interface addresses (for the own-address guard on a wildcard bind).
pub(crate) fn interface_addresses() -> io::Result<Vec<IpAddr>> {
    let addresses = nix::ifaddrs::getifaddrs()?
        .filter_map(|interface| interface.address)
        .filter_map(|address| to_socket_addr(&address))
        .map(|address| address.ip())
        .collect();
    Ok(addresses)
}
