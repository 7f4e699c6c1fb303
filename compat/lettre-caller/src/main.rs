//! compat/lettre-caller: send one message through lettre's `SendmailTransport`.
//!
//! Usage: `lettre-caller SENDMAIL_COMMAND FROM TO SUBJECT` (the body is read
//! from stdin). It prints `sent` and exits 0 on success, or prints lettre's
//! error (which carries sendmail's stderr) and exits 1.

use lettre::message::Message;
use lettre::transport::sendmail::SendmailTransport;
use lettre::Transport;
use std::io::Read;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: lettre-caller SENDMAIL_COMMAND FROM TO SUBJECT < body");
        std::process::exit(64);
    }
    let mut body = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut body) {
        eprintln!("lettre-caller: reading the body: {e}");
        std::process::exit(66);
    }
    let email = Message::builder()
        .from(args[2].parse().expect("lettre-caller: bad FROM"))
        .to(args[3].parse().expect("lettre-caller: bad TO"))
        .subject(args[4].as_str())
        .body(body)
        .expect("lettre-caller: building the message");
    let transport = SendmailTransport::new_with_command(&args[1]);
    match transport.send(&email) {
        Ok(()) => println!("sent"),
        Err(e) => {
            println!("lettre error: {e}");
            std::process::exit(1);
        }
    }
}
