// A keyspace's node layout: a key's Entry at the head of one allocation, and a hash's fields
// packed into it or kept in a HashTable (kv/keyspace.h describes the structure). Entries are read
// by anyone holding a Keyspace::View and changed only by the keyspace.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <optional>
#include <string_view>
#include <utility>

#include "kv/open_index.h"

namespace quiver::kv {

using Millis = int64_t;  // Unix time in milliseconds (common/clock.h)

enum class Type : uint8_t { kString, kHash };
std::string_view TypeName(Type type);  // "string", "hash"

// A field of a large hash: one allocation of this header, the field's name and its value (the
// room for the value reaches the end of the malloc chunk, so a value may grow a little in place).
class HashField {
 public:
  std::string_view key() const { return {tail(), name_size_}; }
  std::string_view value() const { return {tail() + name_size_, value_size_}; }

 private:
  friend class HashTable;
  const char* tail() const { return reinterpret_cast<const char*>(this + 1); }
  uint32_t name_size_ = 0;
  uint32_t value_size_ = 0;
  uint32_t capacity_ = 0;  // room for the value
};

// A large hash's fields: an OpenIndex of HashFields, which it owns, and the bytes they take.
class HashTable {
 public:
  HashTable() = default;
  ~HashTable();
  HashTable(const HashTable&) = delete;
  HashTable& operator=(const HashTable&) = delete;

  const HashField* Find(std::string_view field) const;
  // Sets a field; true when it is new.
  bool Set(std::string_view field, std::string_view value);
  // Removes a field; false when it was not there. The slot array may shrink.
  bool Delete(std::string_view field);
  size_t size() const { return index_.size(); }
  // Bytes of this object, its slot array and its fields.
  uint64_t bytes() const { return bytes_; }

 private:
  friend class Hash;
  // A field holding `name` with room for `capacity` value bytes (its value left empty).
  static HashField* NewField(std::string_view name, size_t capacity);
  static uint64_t FieldBytes(const HashField& field);
  OpenIndex<HashField> index_;
  uint64_t bytes_ = ChunkBytes(sizeof(HashTable));
};

// A hash's fields, read-only, whichever their encoding (valid while the View that found the
// entry lives and the hash is not changed). A small hash is packed into its key's node: fields
// in the order they were added, each as [u8 name size][u8 value size][name][value]; lookups
// scan them, which for a few dozen short fields costs less than hashing, and takes ~2 bytes per
// field beyond the bytes themselves (Redis's listpack encoding, in spirit). A hash that gets
// more fields than the keyspace's packed-field limit (128 unless set), or a name or value longer
// than its packed-bytes limit (64), becomes a HashTable for good.
class Hash {
 public:
  static constexpr uint32_t kMaxPackedFields = 128;  // Redis's hash-max-listpack-entries
  static constexpr uint32_t kMaxPackedBytes = 64;    // Redis's hash-max-listpack-value
  // What the limits may be set to: the field count and sizes a packed hash can record.
  static constexpr uint32_t kPackedFieldsCeiling = 65535;
  static constexpr uint32_t kPackedBytesCeiling = 255;
  static constexpr size_t kFieldHeader = 2;  // a packed field's [u8 name size][u8 value size]

  // The value of `field`, if the hash has it.
  std::optional<std::string_view> Find(std::string_view field) const;
  size_t size() const { return table_ != nullptr ? table_->size() : fields_; }
  bool empty() const { return size() == 0; }
  bool packed() const { return table_ == nullptr; }

  // Yields (field, value) pairs: a packed hash's in the order added, a table's in no order.
  class Iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = std::pair<std::string_view, std::string_view>;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = value_type;

    value_type operator*() const {
      if (table_ != nullptr) {
        const HashField* field = table_->index_.At(position_);
        return {field->key(), field->value()};
      }
      const char* at = packed_ + position_;
      const size_t name = static_cast<uint8_t>(at[0]);
      return {{at + kFieldHeader, name}, {at + kFieldHeader + name, static_cast<uint8_t>(at[1])}};
    }
    Iterator& operator++() {
      if (table_ != nullptr) {
        ++position_;
        Skip();
      } else {
        const char* at = packed_ + position_;
        position_ += kFieldHeader + static_cast<uint8_t>(at[0]) + static_cast<uint8_t>(at[1]);
      }
      return *this;
    }
    bool operator==(const Iterator& other) const { return position_ == other.position_; }

   private:
    friend class Hash;
    Iterator(const HashTable* table, const char* packed, size_t position)
        : table_(table), packed_(packed), position_(position) {
      if (table_ != nullptr) Skip();
    }
    void Skip() {
      while (position_ < table_->index_.positions() && table_->index_.At(position_) == nullptr) {
        ++position_;
      }
    }
    const HashTable* table_;
    const char* packed_;
    size_t position_;
  };
  Iterator begin() const { return {table_, packed_.data(), 0}; }
  Iterator end() const {
    return {table_, packed_.data(),
            table_ != nullptr ? table_->index_.positions() : packed_.size()};
  }

 private:
  friend class Entry;
  Hash(const HashTable* table, std::string_view packed, size_t fields)
      : table_(table), packed_(packed), fields_(fields) {}
  const HashTable* table_;  // null: packed
  std::string_view packed_;
  size_t fields_;
};

// The bytes a field takes in a packed hash.
constexpr size_t HashPackedBytes(std::string_view field, std::string_view value) {
  return Hash::kFieldHeader + field.size() + value.size();
}

// A key's state, at the head of its node: one allocation holding this header, the key's bytes,
// and the value behind them — a string's bytes or a packed hash's fields (the node's room for
// them reaches the end of its malloc chunk, so a value may grow a little in place), or a large
// hash's HashTable pointer. Entries are made and changed only through Keyspace::View; a change
// that needs a larger node moves the entry and returns its new address.
class Entry {
 public:
  Type type() const { return type_; }
  // The eviction clock: the last access (Unix ms, low 32 bits) or, under an LFU policy, Redis's
  // LFU word (minutes of the last decay << 8 | logarithmic access counter).
  uint32_t access() const { return access_; }
  Millis expire_at() const { return expire_at_; }  // 0: no TTL
  std::string_view key() const { return {tail(), key_size_}; }
  std::string_view string() const { return value(); }                           // kString
  Hash hash() const { return {table_ ? table() : nullptr, value(), fields_}; }  // kHash

 private:
  friend class Keyspace;
  Entry() = default;
  ~Entry() = default;
  const char* tail() const { return reinterpret_cast<const char*>(this + 1); }
  char* value_bytes() { return reinterpret_cast<char*>(this + 1) + key_size_; }
  // The value's bytes: a string's, a packed hash's fields, or a table's pointer.
  std::string_view value() const { return {tail() + key_size_, size_}; }
  HashTable* table() const {
    HashTable* table;
    // The pointer's own bytes are stored (unaligned) behind the key.
    std::memcpy(&table, tail() + key_size_, sizeof(table));  // NOLINT(bugprone-sizeof-expression)
    return table;
  }

  Type type_ = Type::kString;
  bool table_ = false;   // kHash: the value is a HashTable pointer, not packed fields
  uint16_t fields_ = 0;  // kHash, packed: the number of fields
  uint32_t access_ = 0;
  Millis expire_at_ = 0;
  uint32_t volatile_index_ = 0;  // position in its shard's volatile_keys while expire_at_ != 0
  uint32_t key_size_ = 0;
  uint32_t size_ = 0;      // the value's bytes (a table's: its pointer's)
  uint32_t capacity_ = 0;  // the node's room behind the key
};
static_assert(sizeof(Entry) == 32);

}  // namespace quiver::kv
