// The nets of a tile session, for both engines: one per tile shape at least
// (a net is built for one size), and as many more as a byte budget allows,
// each keeping the activations of the tile it last forwarded (its tag) so
// that pass 2 need not forward that tile again.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>

#include "engine.h"

namespace nst {

inline bool same_key(const ImageSize& a, const ImageSize& b) { return a.height == b.height && a.width == b.width; }

// A net of an extended region's shape that computes as the whole image of
// `image` does (the cpu engine's Winograd layers are those of that image).
struct TileNetKey {
  ImageSize extended, image;
};
inline bool same_key(const TileNetKey& a, const TileNetKey& b) {
  return same_key(a.extended, b.extended) && same_key(a.image, b.image);
}

// Key: what makes nets interchangeable (ImageSize: the shape alone).
template <class Net, class Key = ImageSize>
class NetPool {
 public:
  struct Entry {
    Key shape{};
    std::unique_ptr<Net> net;
    size_t bytes = 0;
    uint64_t tag = 0;   // the tile whose activations the net holds (0: none worth keeping)
    uint64_t used = 0;  // when last acquired
  };

  explicit NetPool(double budget_bytes) : budget_(budget_bytes) {}

  // A net of `shape` for the tile `tag`: the one that holds that tile's
  // activations when there is one (hit = true), else one to forward into,
  // chosen so as to keep the most other tiles: a net of that shape that
  // holds nothing worth keeping, else a new one within the budget (freeing
  // nets of other shapes that hold nothing worth keeping first), else the
  // least recently used of that shape, else a new one after freeing the least
  // recently used nets of other shapes. At least one net always exists.
  Entry& acquire(const Key& shape, uint64_t tag, size_t bytes, const std::function<std::unique_ptr<Net>()>& make,
                 bool& hit) {
    hit = false;
    const uint64_t now = ++clock_;
    auto same = [&](const Entry& e) { return same_key(e.shape, shape); };
    if (tag != 0)
      for (Entry& e : entries_)
        if (e.tag == tag && same(e)) {
          e.used = now;
          hit = true;
          return e;
        }
    if (Entry* e = least_recent([&](const Entry& x) { return same(x) && x.tag == 0; })) return use(*e, now);
    if (fits(bytes)) return create(shape, bytes, make, now);
    while (!fits(bytes) && free_least_recent([&](const Entry& x) { return !same(x) && x.tag == 0; })) {
    }
    if (fits(bytes)) return create(shape, bytes, make, now);
    if (Entry* e = least_recent(same)) return use(*e, now);
    while (!fits(bytes) && free_least_recent([&](const Entry& x) { return !same(x); })) {
    }
    return create(shape, bytes, make, now);
  }

  size_t bytes() const { return held_; }
  size_t peak_bytes() const { return peak_; }
  double built() const { return built_; }

 private:
  bool fits(size_t bytes) const { return entries_.empty() || double(held_ + bytes) <= budget_; }

  Entry& use(Entry& e, uint64_t now) {
    e.tag = 0;
    e.used = now;
    return e;
  }

  Entry& create(const Key& shape, size_t bytes, const std::function<std::unique_ptr<Net>()>& make, uint64_t now) {
    Entry e;
    e.shape = shape;
    e.bytes = bytes;
    e.used = now;
    e.net = make();
    entries_.push_back(std::move(e));
    held_ += bytes;
    peak_ = std::max(peak_, held_);
    built_++;
    return entries_.back();
  }

  template <class Pred>
  Entry* least_recent(Pred pred) {
    Entry* best = nullptr;
    for (Entry& e : entries_)
      if (pred(e) && (!best || e.used < best->used)) best = &e;
    return best;
  }

  template <class Pred>
  bool free_least_recent(Pred pred) {
    Entry* victim = least_recent(pred);
    if (!victim) return false;
    held_ -= victim->bytes;
    entries_.remove_if([victim](const Entry& e) { return &e == victim; });
    return true;
  }

  double budget_;
  std::list<Entry> entries_;  // stable addresses: callers hold an Entry& while they use it
  size_t held_ = 0, peak_ = 0;
  uint64_t clock_ = 0;
  double built_ = 0;
};

// A tile session's stats: the forwards it counted, the nets its pool built and holds.
template <class Net, class Key>
TileStats pool_stats(TileStats counted, const NetPool<Net, Key>& pool) {
  counted.nets_built = double(pool.built());
  counted.net_bytes = double(pool.bytes());
  counted.peak_net_bytes = double(pool.peak_bytes());
  return counted;
}

}  // namespace nst
