// Prints the dynamic shared memory each attention CUDA kernel's launcher asks for, one line a
// template instantiation: "<kernel> <dtype>, <head-dim tile> <bytes>". Host code only, so it runs
// without a GPU: tools/cuda_check.sh builds and runs it, and tools/triton_check.py adds the bytes
// to ptxas's static figure in the resource table (ptxas cannot see dynamic shared memory).
#include <cstdio>

#include "attention/attention_cuda_layouts.cuh"

namespace attn = llmkernels::attn_cuda;

template <typename T, int DT>
void print_sizes(const char* dtype) {
  std::printf("attention_forward_kernel %s, %d %d\n", dtype, DT, attn::ForwardLayout<T, DT>::bytes);
  std::printf("attention_dkdv_kernel %s, %d %d\n", dtype, DT, attn::BackwardLayout<T, DT>::bytes_dkdv);
  std::printf("attention_dq_kernel %s, %d %d\n", dtype, DT, attn::BackwardLayout<T, DT>::bytes_dq);
}

template <typename T>
void print_head_dims(const char* dtype) {
  print_sizes<T, 32>(dtype);
  print_sizes<T, 64>(dtype);
  print_sizes<T, 128>(dtype);
  print_sizes<T, 256>(dtype);
}

int main() {
  print_head_dims<float>("fp32");
  print_head_dims<__half>("fp16");
  print_head_dims<__nv_bfloat16>("bf16");
  return 0;
}
