// PeakMagnitude: max |x| over a whole float32 tensor, in one pass on the CPU's threads.
//
// The ε gate compares each block's max|F| with ε. TensorFlow's ops take it as two reductions,
// max F and min F (reading the branch twice), or as |F| then its max (a full-size temporary).
// This kernel reads F once: a float's bits with the sign bit cleared are ordered as unsigned
// integers exactly as the magnitudes are, with the NaNs above infinity. So the largest of those
// integers is the bit pattern of max|x| (a NaN if there is one), whatever order the elements
// are visited in: every thread count gives the same bits. Built and loaded by peak_op.py.
// It equals max(max x, -min x) by TensorFlow's CPU reductions but for the sign of a zero.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace eps_resnet {

using ::tensorflow::DEVICE_CPU;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;

REGISTER_OP("PeakMagnitude")
    .Input("x: float")
    .Output("peak: float")
    .SetShapeFn(::tensorflow::shape_inference::ScalarShape)
    .Doc("max |x| over all elements: NaN if any is NaN, subnormals as 0, -inf if x is empty.");

namespace {

// Elements per task: 128 KiB of floats, so a 2 M-element branch gives the pool 16 tasks.
constexpr int64_t kChunk = 32768;
// bits of the smallest normal float32, 2^-126
constexpr uint32_t kSmallestNormal = 0x00800000u;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
uint32_t LargestMagnitudeBits(const uint32_t* bits, int64_t n) {
  uint32_t peak = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t magnitude = bits[i] & 0x7fffffffu;
    peak = magnitude > peak ? magnitude : peak;
  }
  return peak;
}

}  // namespace

class PeakMagnitudeOp : public OpKernel {
 public:
  explicit PeakMagnitudeOp(OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    const Tensor& x = context->input(0);
    Tensor* peak = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({}), &peak));
    const int64_t n = x.NumElements();
    const uint32_t* bits = reinterpret_cast<const uint32_t*>(x.flat<float>().data());
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    std::vector<uint32_t> peaks(std::max<int64_t>(chunks, 1), 0u);
    auto scan = [&](int64_t first, int64_t last) {
      for (int64_t k = first; k < last; ++k) {
        const int64_t start = k * kChunk;
        peaks[k] = LargestMagnitudeBits(bits + start, std::min(n, start + kChunk) - start);
      }
    };
    // cost per chunk in the pool's units (about a cycle per element read)
    context->device()->tensorflow_cpu_worker_threads()->workers->ParallelFor(
        chunks, 2 * kChunk, scan);
    uint32_t largest = *std::max_element(peaks.begin(), peaks.end());
    // TensorFlow's CPU threads flush subnormals to zero, so its reductions see them as 0; the
    // flush is monotone, so flushing the largest is flushing each
    if (largest < kSmallestNormal) largest = 0;
    float value;
    std::memcpy(&value, &largest, sizeof value);
    // as TensorFlow's max of nothing
    peak->scalar<float>()() = n ? value : -std::numeric_limits<float>::infinity();
  }
};

REGISTER_KERNEL_BUILDER(Name("PeakMagnitude").Device(DEVICE_CPU), PeakMagnitudeOp);

}  // namespace eps_resnet
