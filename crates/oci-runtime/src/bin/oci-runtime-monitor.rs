//! The per-container monitor of `oci_runtime::monitor`: started by
//! `Runtime::create_monitored`, never by hand.

fn main() {
    oci_runtime::monitor::monitor_main()
}
