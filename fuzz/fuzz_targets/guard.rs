//! What the DAX fuzz targets check besides panics: the heap a decode takes at its peak,
//! against the input's size, and the stack it needs, by running it on a thread with half a
//! worker's stack. A decoder that allocates from a length it has not checked, or recurses
//! without a limit, fails here even where the machine would have survived it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are only
// arithmetic on the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        if new > layout.size() {
            let live = LIVE.fetch_add(new - layout.size(), Ordering::Relaxed) + new - layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        } else {
            LIVE.fetch_sub(layout.size() - new, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new) }
    }
}

/// Half of a tokio worker's 2 MiB stack.
const STACK: usize = 1 << 20;
/// The heap a decode may take: its JSON text is at most about 15 bytes for each byte of the
/// request (`{"BOOL":false},` for one byte), held twice (the values, then the body), plus a
/// fixed allowance for the session's registry and an expression's bounded tree.
const PER_BYTE: usize = 40;
const FIXED: usize = 8 << 20;

/// Starts measuring a peak: the heap live now, from which [`peak_since`] counts.
pub fn start_peak() -> usize {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    before
}

/// The most heap live at once since [`start_peak`] returned `before`, above it.
pub fn peak_since(before: usize) -> usize {
    PEAK.load(Ordering::Relaxed).saturating_sub(before)
}

/// Runs `decode` on `input` on a small stack, and fails if its heap ever passed the bound.
#[allow(dead_code)] // the decode-memory bench uses the allocator only
pub fn check(input: &[u8], decode: fn(&[u8])) {
    let owned = input.to_vec();
    let before = start_peak();
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(move || decode(&owned))
        .expect("a thread")
        .join()
        .expect("the decode did not panic");
    let peak = peak_since(before);
    let bound = PER_BYTE * input.len() + FIXED;
    assert!(
        peak <= bound,
        "decoding {} bytes took {peak} bytes of heap at its peak (bound {bound})",
        input.len()
    );
}

/// Every data request decoded to the body that would go upstream, nothing else built.
#[allow(dead_code)] // the decode-memory bench uses the allocator only
pub fn decode(input: &[u8]) {
    dynamo_cache::fuzzing::dax_bodies(input, |_, body| {
        drop(body);
    });
}
