//! A minimal host for the sandbox's init, so the crate's own tests (and programs that embed the
//! sandbox without wanting to re-execute themselves) have an executable to point
//! `RunSpec::init` at.

fn main() {
    forge_sandbox::enter_if_init();
    eprintln!("forge-sandbox-init is only started by forge's sandbox");
    std::process::exit(2);
}
