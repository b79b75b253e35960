//! syncctl: the operator CLI of pd-sfdc-sync.

fn main() {
    println!("syncctl");
}
