//! The dot rule on stdin (issue 14, point 8; DESIGN.md, `-i`): without `-i`
//! a lone `.` ends the message and only a leading `..` loses a dot, as in
//! sendmail 8; `.x` keeps its dot. Asserted on what the receiver got.

use crate::support::sink::{Sink, find};
use crate::support::vs::Env;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn without_i_a_single_leading_dot_stays_and_a_double_dot_loses_one() {
    let sink = Sink::start_default();
    let env = Env::new();
    env.relay(sink.addr());
    env.virtusers("root  root@shop.example  127.0.0.2\n");
    env.run(
        &["bob@example.org"],
        b"Subject: d\n\n.x stays\n..y loses one\n...\n.\nnot part of it\n",
    )
    .expect_code(0);
    let m = &sink.wait_messages(1, WAIT)[0];
    assert!(
        m.body().starts_with(b".x stays\r\n.y loses one\r\n..\r\n"),
        "{:?}",
        m.text()
    );
    assert!(!m.text().contains("not part of it"));
    // Stuffed again on the wire.
    assert!(find(&m.raw_data, b"\r\n..x stays\r\n..y loses one\r\n...\r\n").is_some());
}

#[test]
fn in_bs_data_every_leading_dot_is_stuffing() {
    let sink = Sink::start_default();
    let env = Env::new();
    env.relay(sink.addr());
    env.virtusers("root  root@shop.example  127.0.0.2\n");
    let dialogue = b"HELO client\r\nMAIL FROM:<root@shop.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: bs\r\n\r\n.x\r\n..y\r\n.\r\nQUIT\r\n";
    env.run(&["-bs"], dialogue).expect_code(0);
    let m = &sink.wait_messages(1, WAIT)[0];
    assert!(m.body().starts_with(b"x\r\n.y\r\n"), "{:?}", m.text());
}
