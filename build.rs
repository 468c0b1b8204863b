//! `web/` is built into the binary with `include_dir!`, which does not tell
//! cargo about files added to the folder; this does, so a new page is picked
//! up without a clean build.
fn main() {
    println!("cargo:rerun-if-changed=web");
}
