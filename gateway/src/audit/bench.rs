//! `posgate audit bench`: seeds N transactions with their events and chain
//! entries through bulk SQL, then measures search latency and chain
//! verification speed.
