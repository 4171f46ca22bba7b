//! ADOPT, Adam, AdamW and AMSGrad for burn (work in progress: the rules land next).
