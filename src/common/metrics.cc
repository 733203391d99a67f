#include "common/metrics.h"

#include <charconv>
#include <cmath>

namespace quiver {
namespace {

void AppendNumber(std::string* out, double value) {
  if (std::isinf(value)) {
    *out += value > 0 ? "+Inf" : "-Inf";
    return;
  }
  char buffer[32];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  out->append(buffer, end);
}

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// Labels rendered inside braces, without them: `a="1",b="x"`.
std::string LabelBody(const MetricLabels& labels) {
  std::string out;
  for (const auto& [key, value] : labels) {
    if (!out.empty()) out += ',';
    out += key + "=\"" + EscapeLabelValue(value) + '"';
  }
  return out;
}

}  // namespace

HistogramMetric::HistogramMetric(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]()) {}

void HistogramMetric::Observe(double value) {
  size_t bucket = 0;
  while (bucket < bounds_.size() && value > bounds_[bucket]) ++bucket;
  buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_micro_.fetch_add(static_cast<uint64_t>(std::llround(std::max(0.0, value) * 1e6)),
                       std::memory_order_relaxed);
}

void HistogramMetric::Read(std::vector<uint64_t>* cumulative, double* sum, uint64_t* count) const {
  cumulative->assign(bounds_.size() + 1, 0);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    (*cumulative)[i] = running;
  }
  *count = running;
  *sum = static_cast<double>(sum_micro_.load(std::memory_order_relaxed)) / 1e6;
}

void MetricsRegistry::Describe(const std::string& name, std::string_view type,
                               std::string_view help) {
  std::lock_guard<std::mutex> lock(mutex_);
  Family& family = families_[name];
  family.type = type;
  family.help = help;
}

CounterMetric& MetricsRegistry::Counter(const std::string& name, const MetricLabels& labels) {
  const std::string key = LabelBody(labels);
  std::lock_guard<std::mutex> lock(mutex_);
  auto& slot = families_[name].counters[key];
  if (!slot) slot = std::make_unique<CounterMetric>();
  return *slot;
}

HistogramMetric& MetricsRegistry::Histogram(const std::string& name, const MetricLabels& labels,
                                            const std::vector<double>& bounds) {
  const std::string key = LabelBody(labels);
  std::lock_guard<std::mutex> lock(mutex_);
  auto& slot = families_[name].histograms[key];
  if (!slot) slot = std::make_unique<HistogramMetric>(bounds);
  return *slot;
}

void MetricsRegistry::Render(std::string* out) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& [name, family] : families_) {
    if (family.counters.empty() && family.histograms.empty()) continue;
    AppendFamilyHeader(out, name, family.type, family.help);
    for (const auto& [labels, counter] : family.counters) {
      *out += name;
      if (!labels.empty()) *out += '{' + labels + '}';
      *out += ' ';
      AppendNumber(out, static_cast<double>(counter->value()));
      *out += '\n';
    }
    for (const auto& [labels, histogram] : family.histograms) {
      AppendHistogramSamples(out, name, labels, *histogram);
    }
  }
  for (const auto& collect : collectors_) collect(out);
}

void AppendHistogramSamples(std::string* out, std::string_view name,
                            std::string_view rendered_labels, const HistogramMetric& histogram) {
  std::vector<uint64_t> cumulative;
  double sum;
  uint64_t count;
  histogram.Read(&cumulative, &sum, &count);
  const std::string prefix = rendered_labels.empty() ? "" : std::string(rendered_labels) + ',';
  for (size_t i = 0; i < cumulative.size(); ++i) {
    *out += std::string(name) + "_bucket{" + prefix + "le=\"";
    AppendNumber(out, i < histogram.bounds().size() ? histogram.bounds()[i] : INFINITY);
    *out += "\"} ";
    AppendNumber(out, static_cast<double>(cumulative[i]));
    *out += '\n';
  }
  const std::string suffix =
      rendered_labels.empty() ? "" : '{' + std::string(rendered_labels) + '}';
  *out += std::string(name) + "_sum" + suffix + ' ';
  AppendNumber(out, sum);
  *out += '\n' + std::string(name) + "_count" + suffix + ' ';
  AppendNumber(out, static_cast<double>(count));
  *out += '\n';
}

void MetricsRegistry::AddCollector(std::function<void(std::string*)> collect) {
  std::lock_guard<std::mutex> lock(mutex_);
  collectors_.push_back(std::move(collect));
}

std::string RenderLabels(const MetricLabels& labels) {
  return labels.empty() ? std::string() : '{' + LabelBody(labels) + '}';
}

void AppendSample(std::string* out, std::string_view name, const MetricLabels& labels,
                  double value) {
  *out += name;
  *out += RenderLabels(labels);
  *out += ' ';
  AppendNumber(out, value);
  *out += '\n';
}

void AppendFamilyHeader(std::string* out, std::string_view name, std::string_view type,
                        std::string_view help) {
  *out += "# HELP ";
  *out += name;
  *out += ' ';
  *out += help;
  *out += "\n# TYPE ";
  *out += name;
  *out += ' ';
  *out += type;
  *out += '\n';
}

void AppendFamilySamples(std::string* out, std::span<const MetricFamilySample> families,
                         const MetricLabels& labels) {
  for (const MetricFamilySample& family : families) {
    AppendFamilyHeader(out, family.name, family.type, family.help);
    AppendSample(out, family.name, labels, family.value);
  }
}

}  // namespace quiver
