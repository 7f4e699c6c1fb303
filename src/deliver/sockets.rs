//! Where `connect` gets its outgoing TCP sockets. Normally made on the spot.
//! A delivery process that gave up the vsendmail group (`privsep`) cannot
//! make sockets that `dist/nftables.conf` lets out to the SMTP ports (the
//! rule matches the group the socket was *made* with): its privileged
//! parent makes a bounded number of unconnected sockets just before the
//! split ([`provide`]), the child inherits them and takes one per connect
//! ([`tcp`]); once they are spent the try fails as a local error (the
//! recipients are deferred). Nothing else crosses from the parent.

use socket2::{Domain, Protocol, Socket, Type};
use std::cell::RefCell;

/// The sockets made for one delivery process, by family.
struct Spare {
    v4: Vec<Socket>,
    v6: Vec<Socket>,
    made: usize,
}

thread_local! {
    // Per thread: the delivery process is the forking thread alone.
    static SPARE: RefCell<Option<Spare>> = const { RefCell::new(None) };
}

/// A new unconnected TCP socket of `domain` (close-on-exec): made here, or
/// in a delivery process without the group, one its parent made.
pub fn tcp(domain: Domain) -> std::io::Result<Socket> {
    SPARE.with_borrow_mut(|spare| {
        let Some(s) = spare.as_mut() else {
            return Socket::new(domain, Type::STREAM.cloexec(), Some(Protocol::TCP));
        };
        let made = s.made;
        let pool = if domain == Domain::IPV6 {
            &mut s.v6
        } else {
            &mut s.v4
        };
        pool.pop().ok_or_else(|| {
            std::io::Error::other(format!(
                "all {made} sockets made for this delivery attempt before the group was given up are used; the rest waits for the next try"
            ))
        })
    })
}

/// Make up to `per_family` sockets of each family for the delivery process
/// about to be forked (a family the host lacks gets none).
pub fn provide(per_family: usize) {
    let make = |d: Domain| -> Vec<Socket> {
        (0..per_family)
            .map_while(|_| Socket::new(d, Type::STREAM.cloexec(), Some(Protocol::TCP)).ok())
            .collect()
    };
    let (v4, v6) = (make(Domain::IPV4), make(Domain::IPV6));
    let made = v4.len() + v6.len();
    SPARE.set(Some(Spare { v4, v6, made }));
}

/// In the parent after the fork: close its copies; it makes its own again.
pub fn withdraw() {
    SPARE.take();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provided_sockets_are_bounded_then_withdrawn() {
        provide(2);
        assert!(tcp(Domain::IPV4).is_ok() && tcp(Domain::IPV4).is_ok());
        let e = tcp(Domain::IPV4).err().unwrap().to_string();
        assert!(e.contains("sockets made for this delivery attempt"), "{e}");
        withdraw();
        assert!(tcp(Domain::IPV4).is_ok());
    }
}
